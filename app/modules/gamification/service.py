"""Points, levels and achievements.

`award_points` is the only way a business's points change. In the caller's transaction
it adds the amount to the total (one atomic UPDATE ... RETURNING, so parallel awards never
lose one), writes the ledger row, moves the level to match the new total, and unlocks
the achievements now earned (a unique key makes a second unlock impossible). It does not
commit: the caller's service commits the award together with what earned it.

Achievement rules are read from the ledger: `first_transaction` and `transactions_50`
count `transaction_recorded` rows, `first_milestone_completed` looks for a
`milestone_completed` row.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, label, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.errors import ConflictError, NotFoundError
from app.db.helpers import commit_or_conflict, rows_touched, table_of
from app.db.types import utcnow
from app.modules.business.models import BusinessProfile
from app.modules.gamification.models import (
    Achievement,
    AchievementRule,
    BusinessAchievement,
    Level,
    PointEvent,
)

TRANSACTION_RECORDED = "transaction_recorded"
TRANSACTION_DELETED = "transaction_deleted"
MILESTONE_COMPLETED = "milestone_completed"
MILESTONE_REOPENED = "milestone_reopened"
TASK_COMPLETED = "task_completed"
TASK_REOPENED = "task_reopened"
_LADDER_LOCK = 0x7E1A7E5  # advisory lock key for edits of the level ladder
ACHIEVEMENT_NOT_FOUND = "Achievement not found"
LEVEL_NOT_FOUND = "Level not found"


# For this long after a business changes its time zone, daily caps count over the last
# 24 hours instead of since local midnight.
TIMEZONE_CHANGE_SETTLES = timedelta(hours=24)


def local_day_start(timezone: str) -> datetime:
    """The start of today in the business's time zone."""
    tz = ZoneInfo(timezone)
    return datetime.combine(datetime.now(tz).date(), time.min, tz)


def cap_window_start(timezone: str, timezone_changed_at: datetime | None) -> datetime:
    """Where today's daily point caps start counting: local midnight, or the last 24
    hours while a time zone change is less than a day old.

    Moving to a zone whose day has already begun again (Jakarta 23:30 is 01:30 in
    Jayapura) would otherwise reopen every cap; over the rolling 24 hours a change gains
    nothing, however often it is repeated, and costs an owner who moves at most a day of
    capped points."""
    day_start = local_day_start(timezone)
    now = utcnow()
    if timezone_changed_at is not None and timezone_changed_at > now - TIMEZONE_CHANGE_SETTLES:
        return min(day_start, now - TIMEZONE_CHANGE_SETTLES)
    return day_start


@dataclass
class PointAward:
    amount: int
    total: int
    level_id: int | None
    level_changed: bool
    unlocked: list[str] = field(default_factory=list)  # achievement codes


class GamificationService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- awarding -----------------------------------------------------------------------

    async def lock_business(self, business_id: uuid.UUID) -> None:
        """Serialise changes of one business's points and roadmap: call it first in the
        transaction; what is read after it is current.

        PostgreSQL: a row lock. SQLite: a write that changes nothing — SQLite begins a
        transaction at its first write and then holds the database's write lock, so the
        reads after it cannot be stale (a plain SELECT would start no transaction)."""
        if self._dialect == "sqlite":
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

    async def award_points(
        self,
        business_id: uuid.UUID,
        reason: str,
        amount: int,
        *,
        ref_id: uuid.UUID | None = None,
    ) -> PointAward:
        # RETURNING gives the new total and the level held until now (this statement
        # does not change it): one round trip instead of a read and a write.
        row = (
            await self.session.execute(
                update(BusinessProfile)
                .where(col(BusinessProfile.id) == business_id)
                .values(
                    total_points=func.max(col(BusinessProfile.total_points) + amount, 0)
                    if self._dialect == "sqlite"
                    else func.greatest(col(BusinessProfile.total_points) + amount, 0),
                    updated_at=utcnow(),
                )
                .returning(col(BusinessProfile.total_points), col(BusinessProfile.level_id))
            )
        ).first()
        if row is None:
            raise NotFoundError("Business not found")
        total, old_level = row
        self.session.add(
            PointEvent(business_id=business_id, reason=reason, amount=amount, ref_id=ref_id)
        )
        reached = (
            select(col(Level.id))
            .where(col(Level.required_points) <= total)
            .order_by(col(Level.required_points).desc())
            .limit(1)
        )
        level_id = await self.session.scalar(reached)
        if level_id != old_level:
            # Read again FOR KEY SHARE (PostgreSQL; SQLite has one writer at a time): a
            # level an admin deletes at this moment is either skipped (its delete
            # committed first) or waits for us, so the business never points at a
            # deleted level. Only on a change, so awards do not all lock the ladder.
            level_id = await self.session.scalar(reached.with_for_update(read=True, key_share=True))
        if level_id != old_level:
            await self.session.execute(
                update(BusinessProfile)
                .where(col(BusinessProfile.id) == business_id)
                .values(level_id=level_id)
            )
        await self.session.flush()
        unlocked = await self._unlock(business_id, total)
        return PointAward(amount, total, level_id, level_id != old_level, unlocked)

    async def daily_cap_start(self, business_id: uuid.UUID) -> datetime:
        """`cap_window_start` of the business as stored now (call it after
        `lock_business`, so a time zone change cannot slip in between)."""
        row = (
            await self.session.execute(
                select(
                    col(BusinessProfile.timezone), col(BusinessProfile.timezone_changed_at)
                ).where(col(BusinessProfile.id) == business_id)
            )
        ).first()
        if row is None:
            raise NotFoundError("Business not found")
        return cap_window_start(*row)

    async def events_today(self, business_id: uuid.UUID, reason: str, since: datetime) -> int:
        """Ledger rows with points > 0 for `reason` since `since` (for daily caps)."""
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

    async def points_today(
        self, business_id: uuid.UUID, reasons: tuple[str, ...], since: datetime
    ) -> int:
        """Points paid (amounts > 0) for `reasons` since `since` (for daily point caps)."""
        value = await self.session.scalar(
            select(func.coalesce(func.sum(col(PointEvent.amount)), 0)).where(
                col(PointEvent.business_id) == business_id,
                col(PointEvent.reason).in_(reasons),
                col(PointEvent.amount) > 0,
                col(PointEvent.created_at) >= since,
            )
        )
        return int(value or 0)

    async def points_for(self, ref_id: uuid.UUID) -> int:
        """Net points the ledger holds for one reference (e.g. a transaction)."""
        value = await self.session.scalar(
            select(func.coalesce(func.sum(col(PointEvent.amount)), 0)).where(
                col(PointEvent.ref_id) == ref_id
            )
        )
        return int(value or 0)

    async def _unlock(self, business_id: uuid.UUID, total: int) -> list[str]:
        have = select(col(BusinessAchievement.achievement_id)).where(
            col(BusinessAchievement.business_id) == business_id
        )
        candidates = list(
            (
                await self.session.execute(
                    select(Achievement).where(col(Achievement.id).not_in(have))
                )
            ).scalars()
        )
        if not candidates:
            return []
        # The ledger is only read while a rule-based achievement is still locked.
        counts = await self._ledger_counts(business_id) if any(a.rule for a in candidates) else {}
        earned = [a for a in candidates if _earned(a, total, counts)]
        if not earned:
            return []
        # Lock what is unlocked (FOR KEY SHARE, PostgreSQL): an achievement an admin
        # deletes at this moment is either gone from this answer or waits for us.
        present = set(
            (
                await self.session.execute(
                    select(col(Achievement.id))
                    .where(col(Achievement.id).in_([a.id for a in earned]))
                    .with_for_update(read=True, key_share=True)
                )
            ).scalars()
        )
        unlocked = []
        for achievement in (a for a in earned if a.id in present):
            table = table_of(BusinessAchievement)
            insert = (
                postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table)
            )
            result = await self.session.execute(
                insert.values(
                    business_id=business_id, achievement_id=achievement.id, unlocked_at=utcnow()
                ).on_conflict_do_nothing(index_elements=["business_id", "achievement_id"])
            )
            if rows_touched(result):
                unlocked.append(achievement.code)
        return unlocked

    async def _ledger_counts(self, business_id: uuid.UUID) -> dict[str, int]:
        rows = await self.session.execute(
            select(col(PointEvent.reason), func.count())
            .where(col(PointEvent.business_id) == business_id)
            .group_by(col(PointEvent.reason))
        )
        return {reason: count for reason, count in rows.all()}

    @property
    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    # --- reading ------------------------------------------------------------------------

    async def levels(self) -> list[Level]:
        return list(
            (await self.session.execute(select(Level).order_by(col(Level.order)))).scalars()
        )

    async def achievements(self) -> list[Achievement]:
        return list(
            (
                await self.session.execute(select(Achievement).order_by(col(Achievement.id)))
            ).scalars()
        )

    async def achievement(self, achievement_id: int) -> Achievement:
        return await self._achievement_or_404(achievement_id)

    async def achievement_by_code(self, code: str) -> Achievement | None:
        return await self.session.scalar(select(Achievement).where(col(Achievement.code) == code))

    async def stats(self, business: BusinessProfile, recent: int = 10) -> dict[str, Any]:
        levels = await self.levels()
        level = next((lv for lv in levels if lv.id == business.level_id), None)
        upcoming = [lv for lv in levels if lv.required_points > business.total_points]
        next_level = min(upcoming, key=lambda lv: lv.required_points) if upcoming else None
        unlocked_at = dict(
            (
                await self.session.execute(
                    select(
                        col(BusinessAchievement.achievement_id),
                        col(BusinessAchievement.unlocked_at),
                    ).where(col(BusinessAchievement.business_id) == business.id)
                )
            ).all()
        )
        achievements = await self.achievements()
        events = await self.session.execute(
            select(PointEvent)
            .where(col(PointEvent.business_id) == business.id)
            .order_by(col(PointEvent.created_at).desc())
            .limit(recent)
        )
        return {
            "total_points": business.total_points,
            "level": level,
            "next_level": next_level,
            "points_to_next_level": (next_level.required_points - business.total_points)
            if next_level
            else None,
            "unlocked": [
                {**_achievement_view(a), "unlocked_at": unlocked_at[a.id]}
                for a in achievements
                if a.id in unlocked_at
            ],
            "locked": [_achievement_view(a) for a in achievements if a.id not in unlocked_at],
            "recent_events": list(events.scalars()),
        }

    async def leaderboard(self, business: BusinessProfile | None, limit: int) -> dict[str, Any]:
        counts = (
            select(col(BusinessAchievement.business_id), func.count().label("n"))
            .group_by(col(BusinessAchievement.business_id))
            .subquery()
        )
        rank = func.rank().over(order_by=col(BusinessProfile.total_points).desc()).label("rank")
        ranked = (
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
        top = (await self.session.execute(ranked.limit(limit))).all()
        mine_id = business.id if business is not None else None
        entries = [_board_row(row, mine_id) for row in top]
        me = None
        if business is not None:
            mine = next((e for e in entries if e["is_mine"]), None)
            if mine is None:
                higher = await self.session.scalar(
                    select(func.count()).where(
                        col(BusinessProfile.total_points) > business.total_points
                    )
                )
                row = (
                    await self.session.execute(ranked.where(col(BusinessProfile.id) == business.id))
                ).one()
                me = {**_board_row(row, mine_id), "rank": (higher or 0) + 1}
            else:
                me = mine
        total = await self.session.scalar(select(func.count()).select_from(BusinessProfile))
        return {"entries": entries, "me": me, "total_businesses": total or 0}

    # --- administration -----------------------------------------------------------------

    async def create_level(self, data: dict[str, Any]) -> Level:
        await self._lock_ladder()
        level = Level(**data)
        _check_ladder([*await self.levels(), level])
        self.session.add(level)
        await self._settle_ladder("A level with this name, order or threshold exists")
        return level

    async def update_level(self, level_id: int, data: dict[str, Any]) -> Level:
        await self._lock_ladder()
        level = await self._level_or_404(level_id)
        fields = ("name", "required_points", "order", "icon")
        proposed = {**{k: getattr(level, k) for k in fields}, **data}
        others = [lv for lv in await self.levels() if lv.id != level_id]
        _check_ladder([*others, Level(id=level_id, **proposed)])
        for key, value in data.items():
            setattr(level, key, value)
        await self._settle_ladder("A level with this name, order or threshold exists")
        return level

    async def place_level(self, level_id: int | None, data: dict[str, Any]) -> Level:
        """Create (no `level_id`) or replace a level, its order following from its
        threshold: just above the highest level that needs fewer points. The levels
        above it move up as far as they must to make room (for ladder editors that know
        no order, like the web client's)."""
        await self._lock_ladder()
        level = await self._level_or_404(level_id) if level_id is not None else None
        ladder = [lv for lv in await self.levels() if lv.id != level_id]
        lower = [lv for lv in ladder if lv.required_points < data["required_points"]]
        higher = [lv for lv in ladder if lv.required_points >= data["required_points"]]
        order = max((lv.order for lv in lower), default=0) + 1
        shift = max(0, order + 1 - min((lv.order for lv in higher), default=order + 1))
        _check_ladder(
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
        await self._settle_ladder("A level with this name or threshold exists")
        return level

    async def delete_level(self, level_id: int) -> None:
        """Holders fall to the highest remaining level their points reach; the base
        level (0 points) cannot go, since its holders would have no level at all."""
        await self._lock_ladder()
        level = await self._level_or_404(level_id)
        _check_ladder([lv for lv in await self.levels() if lv.id != level_id])
        await self.session.delete(level)
        await self._settle_ladder("The level could not be deleted")

    async def _lock_ladder(self) -> None:
        """Serialise ladder edits, so two admins cannot each pass the checks and together
        leave thresholds that do not increase."""
        if self._dialect == "postgresql":
            await self.session.execute(select(func.pg_advisory_xact_lock(_LADDER_LOCK)))
        else:  # SQLite: a write statement takes the database's write lock until commit
            await self.session.execute(update(Level).where(col(Level.id) == -1).values(icon=None))

    async def _settle_ladder(self, conflict: str) -> None:
        """Put every business on the level its points reach under the new ladder."""
        try:
            await self.session.flush()
        except IntegrityError:  # a duplicate name, order or threshold
            await self.session.rollback()
            raise ConflictError(conflict) from None
        reached = (
            select(col(Level.id))
            .where(col(Level.required_points) <= col(BusinessProfile.total_points))
            .order_by(col(Level.required_points).desc())
            .limit(1)
            .scalar_subquery()
        )
        # Only the rows whose level changes: PostgreSQL then skips, without waiting, the
        # businesses an award holds locked, where that award may itself be waiting for
        # this ladder edit (it locks the level it moves to): no deadlock.
        await self.session.execute(
            update(BusinessProfile)
            .where(col(BusinessProfile.level_id).is_distinct_from(reached))
            .values(level_id=reached)
        )
        await commit_or_conflict(self.session, conflict)

    async def create_achievement(self, data: dict[str, Any]) -> Achievement:
        achievement = Achievement(**data)
        self.session.add(achievement)
        await commit_or_conflict(self.session, "An achievement with this code exists")
        return achievement

    async def update_achievement(self, achievement_id: int, data: dict[str, Any]) -> Achievement:
        achievement = await self._achievement_or_404(achievement_id)
        merged = {"required_points": achievement.required_points, "rule": achievement.rule, **data}
        if merged["required_points"] is None and merged["rule"] is None:
            raise ConflictError("An achievement needs required_points or a rule")
        for key, value in data.items():
            setattr(achievement, key, value)
        await commit_or_conflict(
            self.session,
            "An achievement with this code exists",
            not_found=ACHIEVEMENT_NOT_FOUND,  # deleted by a parallel request since we read it
        )
        return achievement

    async def delete_achievement(self, achievement_id: int) -> None:
        """Delete it (and every business's unlock of it); of two parallel deletes, the
        one that finds no row answers 404."""
        result = await self.session.execute(
            delete(Achievement).where(col(Achievement.id) == achievement_id)
        )
        if rows_touched(result) != 1:
            await self.session.rollback()
            raise NotFoundError(ACHIEVEMENT_NOT_FOUND)
        # Unlocks go with it (ON DELETE CASCADE; deleted explicitly too, for SQLite
        # databases opened without foreign keys).
        await self.session.execute(
            delete(BusinessAchievement).where(
                col(BusinessAchievement.achievement_id) == achievement_id
            )
        )
        await self.session.commit()

    async def _level_or_404(self, level_id: int) -> Level:
        level = await self.session.get(Level, level_id)
        if level is None:
            raise NotFoundError(LEVEL_NOT_FOUND)
        return level

    async def _achievement_or_404(self, achievement_id: int) -> Achievement:
        achievement = await self.session.get(Achievement, achievement_id)
        if achievement is None:
            raise NotFoundError(ACHIEVEMENT_NOT_FOUND)
        return achievement


def _earned(achievement: Achievement, total: int, counts: dict[str, int]) -> bool:
    if achievement.required_points is not None and total < achievement.required_points:
        return False
    rule = achievement.rule
    # Every recorded and every deleted entry has a ledger row: the difference is how
    # many entries exist now (recording and deleting 50 times earns nothing).
    entries = counts.get(TRANSACTION_RECORDED, 0) - counts.get(TRANSACTION_DELETED, 0)
    if rule == AchievementRule.FIRST_TRANSACTION:
        return entries >= 1
    if rule == AchievementRule.TRANSACTIONS_50:
        return entries >= 50
    if rule == AchievementRule.FIRST_MILESTONE_COMPLETED:
        return counts.get(MILESTONE_COMPLETED, 0) >= 1
    return rule is None


def _check_ladder(levels: list[Level]) -> None:
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


def _achievement_view(a: Achievement) -> dict[str, Any]:
    return {
        "id": a.id,
        "code": a.code,
        "title": a.title,
        "description": a.description,
        "icon": a.icon,
        "required_points": a.required_points,
        "rule": a.rule,
    }


def _board_row(row: Any, mine_id: uuid.UUID | None) -> dict[str, Any]:
    return {
        "rank": int(row.rank),
        "is_mine": row.id == mine_id,  # the caller's own business
        "business_name": row.name,
        "points": int(row.total_points),
        "level": row.level,
        "achievements_count": int(row.achievements),
    }
