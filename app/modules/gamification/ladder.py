"""The level ladder's administration: create, edit, place and delete levels.

The ladder must start at 0 points and rise strictly with the order (`check_ladder`, a
pure rule). Edits are serialised (`lock_ladder`), checked against the whole ladder as it
would be, and every business is moved to the level its points reach under the new
ladder in the same transaction.
"""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ConflictError, NotFoundError
from app.db.helpers import commit_or_conflict
from app.modules.gamification.models import Level
from app.modules.gamification.repository import GamificationRepository

LEVEL_NOT_FOUND = "Level not found"
_EXISTS = "A level with this name, order or threshold exists"


class LadderService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = GamificationRepository(session)

    async def create_level(self, data: dict[str, Any]) -> Level:
        await self.repo.lock_ladder()
        level = Level(**data)
        check_ladder([*await self.repo.levels(), level])
        self.session.add(level)
        await self._settle(_EXISTS)
        return level

    async def update_level(self, level_id: int, data: dict[str, Any]) -> Level:
        await self.repo.lock_ladder()
        level = await self._level_or_404(level_id)
        fields = ("name", "required_points", "order", "icon")
        proposed = {**{k: getattr(level, k) for k in fields}, **data}
        others = [lv for lv in await self.repo.levels() if lv.id != level_id]
        check_ladder([*others, Level(id=level_id, **proposed)])
        for key, value in data.items():
            setattr(level, key, value)
        await self._settle(_EXISTS)
        return level

    async def place_level(self, level_id: int | None, data: dict[str, Any]) -> Level:
        """Create (no `level_id`) or replace a level, its order following from its
        threshold: just above the highest level that needs fewer points. The levels
        above it move up as far as they must to make room (for ladder editors that know
        no order, like the web client's)."""
        await self.repo.lock_ladder()
        level = await self._level_or_404(level_id) if level_id is not None else None
        ladder = [lv for lv in await self.repo.levels() if lv.id != level_id]
        lower = [lv for lv in ladder if lv.required_points < data["required_points"]]
        higher = [lv for lv in ladder if lv.required_points >= data["required_points"]]
        order = max((lv.order for lv in lower), default=0) + 1
        shift = max(0, order + 1 - min((lv.order for lv in higher), default=order + 1))
        check_ladder(
            [
                *lower,
                *(
                    Level(name=lv.name, required_points=lv.required_points, order=lv.order + shift)
                    for lv in higher
                ),
                Level(id=level_id, **data, order=order),
            ]
        )
        if shift:
            # `sort_order` is unique, checked row by row: park the rows that move on
            # negative orders (distinct, as the old ones are), then give the new ones.
            for lv in [*higher, *([level] if level is not None else [])]:
                lv.order = -lv.order
            await self.session.flush()
            for lv in higher:
                lv.order = shift - lv.order
        if level is None:
            level = Level(**data, order=order)
            self.session.add(level)
        else:
            for key, value in {**data, "order": order}.items():
                setattr(level, key, value)
        await self._settle("A level with this name or threshold exists")
        return level

    async def delete_level(self, level_id: int) -> None:
        """Holders fall to the highest remaining level their points reach; the base
        level (0 points) cannot go, since its holders would have no level at all."""
        await self.repo.lock_ladder()
        level = await self._level_or_404(level_id)
        check_ladder([lv for lv in await self.repo.levels() if lv.id != level_id])
        await self.session.delete(level)
        await self._settle("The level could not be deleted")

    async def _settle(self, conflict: str) -> None:
        """Write the edit and put every business on the level its points now reach."""
        try:
            await self.session.flush()
        except IntegrityError:  # a duplicate name, order or threshold
            await self.session.rollback()
            raise ConflictError(conflict) from None
        await self.repo.resettle_levels()
        await commit_or_conflict(self.session, conflict)

    async def _level_or_404(self, level_id: int) -> Level:
        level = await self.repo.level(level_id)
        if level is None:
            raise NotFoundError(LEVEL_NOT_FOUND)
        return level


def check_ladder(levels: list[Level]) -> None:
    """Levels sorted by order must start at 0 points and strictly increase."""
    ladder = sorted(levels, key=lambda lv: lv.order)
    if not ladder:
        raise ConflictError("At least one level must remain")
    if ladder[0].required_points != 0:
        raise ConflictError(
            "The first level (lowest order) must require 0 points; the base level cannot be "
            "deleted, since businesses below every other threshold would have no level"
        )
    for lower, higher in itertools.pairwise(ladder):
        if higher.required_points <= lower.required_points:
            raise ConflictError(
                "Level thresholds must increase with order: "
                f"'{higher.name}' (order {higher.order}) needs more than "
                f"{lower.required_points} points"
            )
