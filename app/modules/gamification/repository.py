"""Queries of points, levels and achievements. No rules and no commits: the services
(`service`, `ladder`) decide; this reads and writes what they decide.

A business's points and level are two columns of its row (`business_profiles`): they
are written here, and only here, by the statements that keep them consistent with the
ledger and the ladder.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, delete, func, label, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.helpers import rows_touched, table_of
from app.db.types import utcnow
from app.modules.business.models import BusinessProfile
from app.modules.gamification.models import Achievement, BusinessAchievement, Level, PointEvent

_LADDER_LOCK = 0x7E1A7E5  # advisory lock key for edits of the level ladder


class GamificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    # --- the business row's points and level ------------------------------------------

    async def lock_business(self, business_id: uuid.UUID) -> None:
        """PostgreSQL: a row lock. SQLite: a write that changes nothing — SQLite begins a
        transaction at its first write and then holds the database's write lock, so the
        reads after it cannot be stale (a plain SELECT would start no transaction)."""
        if self.dialect == "sqlite":
            await self.session.execute(
                update(BusinessProfile)
                .where(col(BusinessProfile.id) == business_id)
                .values(total_points=col(BusinessProfile.total_points))
            )
            return
        # NO KEY UPDATE: compatible with the KEY SHARE locks that foreign keys of new rows
        # take on the business, so two recorders cannot deadlock each other.
        await self.session.execute(
            select(col(BusinessProfile.id))
            .where(col(BusinessProfile.id) == business_id)
            .with_for_update(key_share=True)  # renders FOR NO KEY UPDATE
        )

    async def add_points(
        self, business_id: uuid.UUID, amount: int
    ) -> tuple[int, int | None] | None:
        """Add `amount` to the total (never below 0) in one atomic statement; the new
        total and the level held until now (None: no such business)."""
        floor = func.max if self.dialect == "sqlite" else func.greatest
        row = (
            await self.session.execute(
                update(BusinessProfile)
                .where(col(BusinessProfile.id) == business_id)
                .values(
                    total_points=floor(col(BusinessProfile.total_points) + amount, 0),
                    updated_at=utcnow(),
                )
                .returning(col(BusinessProfile.total_points), col(BusinessProfile.level_id))
            )
        ).first()
        return None if row is None else (int(row[0]), row[1])

    async def level_reached(self, total: int, *, lock: bool = False) -> int | None:
        """The highest level `total` points reach. With `lock`, read FOR KEY SHARE
        (PostgreSQL): a level an admin deletes at this moment is either skipped (its
        delete committed first) or waits for us."""
        reached = (
            select(col(Level.id))
            .where(col(Level.required_points) <= total)
            .order_by(col(Level.required_points).desc())
            .limit(1)
        )
        if lock:
            reached = reached.with_for_update(read=True, key_share=True)
        return await self.session.scalar(reached)

    async def set_level(self, business_id: uuid.UUID, level_id: int | None) -> None:
        await self.session.execute(
            update(BusinessProfile)
            .where(col(BusinessProfile.id) == business_id)
            .values(level_id=level_id)
        )

    async def timezone_of(self, business_id: uuid.UUID) -> tuple[str, datetime | None] | None:
        """The business's time zone and when it last changed."""
        row = (
            await self.session.execute(
                select(
                    col(BusinessProfile.timezone), col(BusinessProfile.timezone_changed_at)
                ).where(col(BusinessProfile.id) == business_id)
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def resettle_levels(self) -> None:
        """Put every business on the level its points reach under the ladder as it is
        now. Only the rows whose level changes: PostgreSQL then skips, without waiting,
        the businesses an award holds locked, where that award may itself be waiting for
        this ladder edit (it locks the level it moves to): no deadlock."""
        reached = (
            select(col(Level.id))
            .where(col(Level.required_points) <= col(BusinessProfile.total_points))
            .order_by(col(Level.required_points).desc())
            .limit(1)
            .scalar_subquery()
        )
        await self.session.execute(
            update(BusinessProfile)
            .where(col(BusinessProfile.level_id).is_distinct_from(reached))
            .values(level_id=reached)
        )

    # --- the ledger -------------------------------------------------------------------

    def add_event(
        self, business_id: uuid.UUID, reason: str, amount: int, ref_id: uuid.UUID | None
    ) -> None:
        self.session.add(
            PointEvent(business_id=business_id, reason=reason, amount=amount, ref_id=ref_id)
        )

    async def count_paid_events(self, business_id: uuid.UUID, reason: str, since: datetime) -> int:
        """Ledger rows with points > 0 for `reason` since `since`."""
        return (
            await self.session.scalar(
                select(func.count())
                .select_from(PointEvent)
                .where(
                    col(PointEvent.business_id) == business_id,
                    col(PointEvent.reason) == reason,
                    col(PointEvent.amount) > 0,
                    col(PointEvent.created_at) >= since,
                )
            )
            or 0
        )

    async def sum_paid(
        self, business_id: uuid.UUID, reasons: tuple[str, ...], since: datetime
    ) -> int:
        """Points paid (amounts > 0) for `reasons` since `since`."""
        value = await self.session.scalar(
            select(func.coalesce(func.sum(col(PointEvent.amount)), 0)).where(
                col(PointEvent.business_id) == business_id,
                col(PointEvent.reason).in_(reasons),
                col(PointEvent.amount) > 0,
                col(PointEvent.created_at) >= since,
            )
        )
        return int(value or 0)

    async def net_for_ref(self, ref_id: uuid.UUID) -> int:
        value = await self.session.scalar(
            select(func.coalesce(func.sum(col(PointEvent.amount)), 0)).where(
                col(PointEvent.ref_id) == ref_id
            )
        )
        return int(value or 0)

    async def counts_by_reason(self, business_id: uuid.UUID) -> dict[str, int]:
        rows = await self.session.execute(
            select(col(PointEvent.reason), func.count())
            .where(col(PointEvent.business_id) == business_id)
            .group_by(col(PointEvent.reason))
        )
        return {reason: count for reason, count in rows.all()}

    async def recent_events(self, business_id: uuid.UUID, limit: int) -> list[PointEvent]:
        events = await self.session.execute(
            select(PointEvent)
            .where(col(PointEvent.business_id) == business_id)
            .order_by(col(PointEvent.created_at).desc())
            .limit(limit)
        )
        return list(events.scalars())

    # --- levels and achievements ------------------------------------------------------

    async def levels(self) -> list[Level]:
        return list(
            (await self.session.execute(select(Level).order_by(col(Level.order)))).scalars()
        )

    async def level(self, level_id: int) -> Level | None:
        return await self.session.get(Level, level_id)

    async def lock_ladder(self) -> None:
        """Serialise ladder edits until the transaction ends."""
        if self.dialect == "postgresql":
            await self.session.execute(select(func.pg_advisory_xact_lock(_LADDER_LOCK)))
        else:  # SQLite: a write statement takes the database's write lock until commit
            await self.session.execute(update(Level).where(col(Level.id) == -1).values(icon=None))

    async def achievements(self) -> list[Achievement]:
        return list(
            (
                await self.session.execute(select(Achievement).order_by(col(Achievement.id)))
            ).scalars()
        )

    async def achievement(self, achievement_id: int) -> Achievement | None:
        return await self.session.get(Achievement, achievement_id)

    async def achievement_by_code(self, code: str) -> Achievement | None:
        return await self.session.scalar(select(Achievement).where(col(Achievement.code) == code))

    async def delete_achievement(self, achievement_id: int) -> bool:
        """Delete it and every business's unlock of it (ON DELETE CASCADE; deleted
        explicitly too, for SQLite databases opened without foreign keys). False: there
        was no such row."""
        result = await self.session.execute(
            delete(Achievement).where(col(Achievement.id) == achievement_id)
        )
        if rows_touched(result) != 1:
            return False
        await self.session.execute(
            delete(BusinessAchievement).where(
                col(BusinessAchievement.achievement_id) == achievement_id
            )
        )
        return True

    # --- unlocks ----------------------------------------------------------------------

    async def not_unlocked(self, business_id: uuid.UUID) -> list[Achievement]:
        have = select(col(BusinessAchievement.achievement_id)).where(
            col(BusinessAchievement.business_id) == business_id
        )
        return list(
            (
                await self.session.execute(
                    select(Achievement).where(col(Achievement.id).not_in(have))
                )
            ).scalars()
        )

    async def lock_existing(self, achievement_ids: list[int | None]) -> set[int | None]:
        """Those of the achievements that still exist, locked FOR KEY SHARE (PostgreSQL):
        an achievement an admin deletes at this moment is either gone from this answer
        or waits for us."""
        return set(
            (
                await self.session.execute(
                    select(col(Achievement.id))
                    .where(col(Achievement.id).in_(achievement_ids))
                    .with_for_update(read=True, key_share=True)
                )
            ).scalars()
        )

    async def add_unlock(self, business_id: uuid.UUID, achievement_id: int | None) -> bool:
        """Record the unlock; False if the business already had it (a unique key makes a
        second unlock impossible)."""
        table = table_of(BusinessAchievement)
        insert = postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)
        result = await self.session.execute(
            insert.values(
                business_id=business_id, achievement_id=achievement_id, unlocked_at=utcnow()
            ).on_conflict_do_nothing(index_elements=["business_id", "achievement_id"])
        )
        return rows_touched(result) > 0

    async def unlocked_at(self, business_id: uuid.UUID) -> dict[int, datetime]:
        rows = await self.session.execute(
            select(
                col(BusinessAchievement.achievement_id), col(BusinessAchievement.unlocked_at)
            ).where(col(BusinessAchievement.business_id) == business_id)
        )
        return {achievement_id: at for achievement_id, at in rows.all()}

    # --- the leaderboard --------------------------------------------------------------

    def _ranked(self) -> Select[*tuple[Any, ...]]:
        counts = (
            select(col(BusinessAchievement.business_id), func.count().label("n"))
            .group_by(col(BusinessAchievement.business_id))
            .subquery()
        )
        rank = func.rank().over(order_by=col(BusinessProfile.total_points).desc()).label("rank")
        return (
            select(
                col(BusinessProfile.id),
                col(BusinessProfile.name),
                col(BusinessProfile.total_points),
                label("level", col(Level.name)),
                func.coalesce(counts.c.n, 0).label("achievements"),
                rank,
            )
            .outerjoin(Level, col(Level.id) == col(BusinessProfile.level_id))
            .outerjoin(counts, counts.c.business_id == col(BusinessProfile.id))
            .order_by(
                col(BusinessProfile.total_points).desc(),
                col(BusinessProfile.created_at),
                col(BusinessProfile.id),
            )
        )

    async def top(self, limit: int) -> list[Row[Any]]:
        """The first `limit` businesses by points: id, name, total_points, level,
        achievements, rank."""
        return list((await self.session.execute(self._ranked().limit(limit))).all())

    async def board_row(self, business_id: uuid.UUID) -> Row[Any]:
        ranked = self._ranked().where(col(BusinessProfile.id) == business_id)
        return (await self.session.execute(ranked)).one()

    async def count_above(self, points: int) -> int:
        return (
            await self.session.scalar(
                select(func.count()).where(col(BusinessProfile.total_points) > points)
            )
            or 0
        )

    async def count_businesses(self) -> int:
        return await self.session.scalar(select(func.count()).select_from(BusinessProfile)) or 0
