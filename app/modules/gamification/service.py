"""Points, levels and achievements: awarding, reading, and the achievement catalogue
(the level ladder's administration is in `ladder`, the queries in `repository`).

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

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ConflictError, NotFoundError
from app.db.helpers import commit_or_conflict
from app.db.types import utcnow
from app.modules.gamification.models import (
    Achievement,
    AchievementRule,
    Level,
    PointEvent,
)
from app.modules.gamification.repository import GamificationRepository

if TYPE_CHECKING:  # the entity the business service hands out
    from app.modules.business.service import BusinessProfile

TRANSACTION_RECORDED = "transaction_recorded"
TRANSACTION_DELETED = "transaction_deleted"
MILESTONE_COMPLETED = "milestone_completed"
MILESTONE_REOPENED = "milestone_reopened"
TASK_COMPLETED = "task_completed"
TASK_REOPENED = "task_reopened"
ACHIEVEMENT_NOT_FOUND = "Achievement not found"


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


@dataclass(frozen=True)
class AchievementProgress:
    achievement: Achievement
    unlocked_at: datetime | None  # None: still locked


@dataclass(frozen=True)
class GameStats:
    total_points: int
    level: Level | None
    next_level: Level | None
    points_to_next_level: int | None
    unlocked: list[AchievementProgress]
    locked: list[AchievementProgress]
    recent_events: list[PointEvent]


@dataclass(frozen=True)
class BoardRow:
    """A business on the leaderboard: no ids, only what the board shows."""

    rank: int
    business_name: str
    points: int
    level: str | None
    achievements_count: int
    is_mine: bool  # the caller's own business


@dataclass(frozen=True)
class Board:
    entries: list[BoardRow]
    me: BoardRow | None  # the caller's row, also when it is outside the top
    total_businesses: int


class GamificationService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = GamificationRepository(session)

    # --- awarding -----------------------------------------------------------------------

    async def lock_business(self, business_id: uuid.UUID) -> None:
        """Serialise changes of one business's points and roadmap: call it first in the
        transaction; what is read after it is current."""
        await self.repo.lock_business(business_id)

    async def award_points(
        self,
        business_id: uuid.UUID,
        reason: str,
        amount: int,
        *,
        ref_id: uuid.UUID | None = None,
    ) -> PointAward:
        # One round trip gives the new total and the level held until now.
        added = await self.repo.add_points(business_id, amount)
        if added is None:
            raise NotFoundError("Business not found")
        total, old_level = added
        self.repo.add_event(business_id, reason, amount, ref_id)
        level_id = await self.repo.level_reached(total)
        if level_id != old_level:
            # Read again, locked, so the business never points at a level an admin
            # deletes at this moment. Only on a change, so awards do not all lock the
            # ladder.
            level_id = await self.repo.level_reached(total, lock=True)
        if level_id != old_level:
            await self.repo.set_level(business_id, level_id)
        await self.session.flush()
        unlocked = await self._unlock(business_id, total)
        return PointAward(amount, total, level_id, level_id != old_level, unlocked)

    async def daily_cap_start(self, business_id: uuid.UUID) -> datetime:
        """`cap_window_start` of the business as stored now (call it after
        `lock_business`, so a time zone change cannot slip in between)."""
        zone = await self.repo.timezone_of(business_id)
        if zone is None:
            raise NotFoundError("Business not found")
        return cap_window_start(*zone)

    async def events_today(self, business_id: uuid.UUID, reason: str, since: datetime) -> int:
        """Ledger rows with points > 0 for `reason` since `since` (for daily caps)."""
        return await self.repo.count_paid_events(business_id, reason, since)

    async def points_today(
        self, business_id: uuid.UUID, reasons: tuple[str, ...], since: datetime
    ) -> int:
        """Points paid (amounts > 0) for `reasons` since `since` (for daily point caps)."""
        return await self.repo.sum_paid(business_id, reasons, since)

    async def points_for(self, ref_id: uuid.UUID) -> int:
        """Net points the ledger holds for one reference (e.g. a transaction)."""
        return await self.repo.net_for_ref(ref_id)

    async def _unlock(self, business_id: uuid.UUID, total: int) -> list[str]:
        candidates = await self.repo.not_unlocked(business_id)
        if not candidates:
            return []
        # The ledger is only read while a rule-based achievement is still locked.
        counts = (
            await self.repo.counts_by_reason(business_id) if any(a.rule for a in candidates) else {}
        )
        earned = [a for a in candidates if _earned(a, total, counts)]
        if not earned:
            return []
        present = await self.repo.lock_existing([a.id for a in earned])
        unlocked = []
        for achievement in (a for a in earned if a.id in present):
            if await self.repo.add_unlock(business_id, achievement.id):
                unlocked.append(achievement.code)
        return unlocked

    # --- reading ------------------------------------------------------------------------

    async def levels(self) -> list[Level]:
        return await self.repo.levels()

    async def level(self, level_id: int) -> Level | None:
        return await self.repo.level(level_id)

    async def achievements(self) -> list[Achievement]:
        return await self.repo.achievements()

    async def achievement(self, achievement_id: int) -> Achievement:
        return await self._achievement_or_404(achievement_id)

    async def achievement_by_code(self, code: str) -> Achievement | None:
        return await self.repo.achievement_by_code(code)

    async def stats(self, business: BusinessProfile, recent: int = 10) -> GameStats:
        levels = await self.levels()
        level = next((lv for lv in levels if lv.id == business.level_id), None)
        upcoming = [lv for lv in levels if lv.required_points > business.total_points]
        next_level = min(upcoming, key=lambda lv: lv.required_points) if upcoming else None
        unlocked_at = await self.repo.unlocked_at(business.id)
        achievements = await self.achievements()
        return GameStats(
            total_points=business.total_points,
            level=level,
            next_level=next_level,
            points_to_next_level=(next_level.required_points - business.total_points)
            if next_level
            else None,
            unlocked=[
                AchievementProgress(a, unlocked_at[a.id])
                for a in achievements
                if a.id in unlocked_at
            ],
            locked=[AchievementProgress(a, None) for a in achievements if a.id not in unlocked_at],
            recent_events=await self.repo.recent_events(business.id, recent),
        )

    async def leaderboard(self, business: BusinessProfile | None, limit: int) -> Board:
        mine_id = business.id if business is not None else None
        entries = [_board_row(row, mine_id) for row in await self.repo.top(limit)]
        me = None
        if business is not None:
            me = next((e for e in entries if e.is_mine), None)
            if me is None:
                higher = await self.repo.count_above(business.total_points)
                row = await self.repo.board_row(business.id)
                me = replace(_board_row(row, mine_id), rank=higher + 1)
        return Board(entries, me, await self.repo.count_businesses())

    # --- achievement administration ---------------------------------------------------

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
        if not await self.repo.delete_achievement(achievement_id):
            await self.session.rollback()
            raise NotFoundError(ACHIEVEMENT_NOT_FOUND)
        await self.session.commit()

    async def _achievement_or_404(self, achievement_id: int) -> Achievement:
        achievement = await self.repo.achievement(achievement_id)
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


def _board_row(row: Any, mine_id: uuid.UUID | None) -> BoardRow:
    return BoardRow(
        rank=int(row.rank),
        business_name=row.name,
        points=int(row.total_points),
        level=row.level,
        achievements_count=int(row.achievements),
        is_mine=row.id == mine_id,
    )
