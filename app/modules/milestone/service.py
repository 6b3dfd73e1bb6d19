"""Roadmap rules: milestones and tasks, their points, and when a new roadmap is due.

Points are set by these rules, never by the client or the model: in a generated roadmap
a task is worth `TASK_POINTS_PER_LEVEL` x the milestone's difficulty and the completed
milestone a bonus of `BONUS_POINTS_PER_LEVEL` x difficulty; a milestone the owner (or the
advisor) made earns the base rate (difficulty 1), since its difficulty is self-declared.
The ledger's net points for a task (or milestone) say whether it holds its award now, so
a retry, a parallel request or an un-complete never pays twice; and all roadmap awards
of a local day are capped in points, so making, ticking and deleting milestones cannot
farm more than the cap.

Every write takes the business lock first (`GamificationService.lock_business`) and reads
after it, so completions, starts, deletes and swaps of one business never interleave.

A new roadmap is requested (recorded, then run by the roadmap worker) when a profile is
created and when the last active milestone completes, at most `generations_per_day`
times a day; it is saved only if the business has no active milestones then, so two
triggers never make two roadmaps.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.background import Worker
from app.core.config import Settings
from app.core.errors import ConflictError, NotFoundError
from app.db.types import utcnow
from app.modules.gamification.service import (
    MILESTONE_COMPLETED,
    MILESTONE_REOPENED,
    TASK_COMPLETED,
    TASK_REOPENED,
    GamificationService,
)
from app.modules.milestone.models import (
    GenerationKind,
    Milestone,
    MilestoneStatus,
    MilestoneTask,
)
from app.modules.milestone.plans import MilestonePlan, MilestoneView, new_milestone
from app.modules.milestone.repository import MilestoneRepository
from app.modules.milestone.roadmaps import RoadmapRequests, request_roadmap
from app.modules.milestone.schemas import MilestoneCreate, MilestoneUpdate

if TYPE_CHECKING:  # the entity the business service hands out
    from app.modules.business.service import BusinessProfile

NOT_FOUND = "Milestone not found"


@dataclass(frozen=True)
class TaskResult:
    view: MilestoneView
    task_id: uuid.UUID
    changed: bool
    points: int = 0
    milestone_completed: bool = False
    bonus: int = 0
    next_roadmap_requested: bool = False
    unlocked: tuple[str, ...] = ()  # codes of the achievements it unlocked


class MilestoneService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        daily_cap: int,
        generations_per_day: int,
        roadmap_worker: Worker | None,
    ) -> None:
        self.session = session
        self.repo = MilestoneRepository(session)
        self.daily_cap = daily_cap  # roadmap points a business can earn per local day
        self.generations_per_day = generations_per_day  # roadmap requests per 24 hours
        self.roadmap_worker = roadmap_worker  # None while no LLM is configured: no generation

    @classmethod
    def for_settings(
        cls, session: AsyncSession, settings: Settings, roadmap_worker: Worker | None
    ) -> MilestoneService:
        """The one way the app builds it, so the cap and quota in the settings hold on
        every path (routes, the web client's adapter, tools, the roadmap worker)."""
        return cls(
            session,
            daily_cap=settings.POINTS_ROADMAP_DAILY_CAP,
            generations_per_day=settings.ROADMAP_GENERATIONS_PER_DAY,
            roadmap_worker=roadmap_worker,
        )

    # --- reading ----------------------------------------------------------------------------

    async def list(
        self,
        business: BusinessProfile,
        statuses: Sequence[str] | None,
        limit: int,
        offset: int,
    ) -> tuple[builtins.list[MilestoneView], int]:
        milestones, total = await self.repo.list(business.id, statuses, limit, offset)
        tasks = await self.repo.tasks_of([m.id for m in milestones])
        return [MilestoneView(m, tasks[m.id]) for m in milestones], total

    async def get(self, business: BusinessProfile, milestone_id: uuid.UUID) -> MilestoneView:
        return await self._view(await self._own(business, milestone_id))

    async def active_count(self, business: BusinessProfile) -> int:
        return await self.repo.count_active(business.id)

    # --- writing ----------------------------------------------------------------------------

    async def create(
        self,
        business: BusinessProfile,
        data: MilestoneCreate,
        *,
        replaces: uuid.UUID | None = None,
        exclusive: bool = False,
    ) -> MilestoneView:
        """Add a milestone. The advisor creates `exclusive`ly: not while active milestones
        exist, unless it `replaces` one the owner asked to swap (not yet started)."""
        await self._lock(business)
        if replaces is not None:
            old = await self._own(business, replaces)
            if old.status != MilestoneStatus.PENDING:
                raise ConflictError(
                    "Only a milestone that has not started can be replaced; "
                    "delete it (with the owner's confirmation) instead"
                )
            await self.repo.soft_delete(old.id, utcnow())
        elif exclusive and (active := await self.repo.count_active(business.id)):
            raise ConflictError(
                f"The roadmap still has {active} active milestone(s): finish them first, "
                "or replace one if the owner asked for that"
            )
        position = (
            data.order if data.order is not None else await self.repo.next_position(business.id)
        )
        plan = MilestonePlan(data.title, data.description, data.difficulty, data.tasks)
        view = new_milestone(business.id, plan, position)
        self.session.add(view.milestone)
        self.session.add_all(view.tasks)
        await self.session.commit()
        return view

    async def update(
        self, business: BusinessProfile, milestone_id: uuid.UUID, data: MilestoneUpdate
    ) -> MilestoneView:
        await self._lock(business)
        milestone = await self._own(business, milestone_id)
        if data.title is not None:
            milestone.title = data.title
        if data.description is not None:
            milestone.description = data.description
        if data.order is not None:
            milestone.position = data.order
        milestone.updated_at = utcnow()
        await self.session.commit()
        return await self._view(milestone)

    async def start(self, business: BusinessProfile, milestone_id: uuid.UUID) -> MilestoneView:
        """pending -> in_progress; starting one that is in progress changes nothing."""
        await self._lock(business)
        milestone = await self._own(business, milestone_id)
        if milestone.status == MilestoneStatus.COMPLETED:
            raise ConflictError("The milestone is already completed")
        await self.repo.mark_started(milestone.id, utcnow())
        await self.session.commit()
        await self.session.refresh(milestone)
        return await self._view(milestone)

    async def delete(self, business: BusinessProfile, milestone_id: uuid.UUID) -> Milestone:
        """Soft delete: hidden from the roadmap; points already earned stay."""
        await self._lock(business)
        milestone = await self._own(business, milestone_id)
        await self.repo.soft_delete(milestone.id, utcnow())
        await self.session.commit()
        return milestone

    async def milestone_of_task(self, business: BusinessProfile, task_id: uuid.UUID) -> uuid.UUID:
        """The id of the milestone holding a task of this business (404 otherwise), for
        callers that know the task alone."""
        milestone_id = await self.repo.milestone_of_task(business.id, task_id)
        if milestone_id is None:
            raise NotFoundError("Task not found")
        return milestone_id

    async def set_task_done(
        self, business: BusinessProfile, milestone_id: uuid.UUID, task_id: uuid.UUID, done: bool
    ) -> TaskResult:
        """Complete (or un-complete) a task, with its points, in one transaction.

        Under the business lock, of parallel requests exactly one changes the task; the
        others see `changed: false` and pay nothing.
        """
        game = await self._lock(business)
        milestone = await self._own(business, milestone_id)
        task = await self.repo.task(milestone.id, task_id)
        if task is None:
            raise NotFoundError("Task not found")
        now = utcnow()
        if not await self.repo.mark_task(task.id, done, now):
            await self.session.commit()  # nothing written; ends the transaction and its lock
            return TaskResult(await self._view(milestone), task_id, changed=False)
        if done:
            result = await self._completed_task(business, milestone, task, game, now)
        else:
            result = await self._reopened_task(business, milestone, task, game, now)
        await self.session.commit()
        if result.next_roadmap_requested and self.roadmap_worker is not None:
            self.roadmap_worker.wake()
        return result

    async def _completed_task(
        self,
        business: BusinessProfile,
        milestone: Milestone,
        task: MilestoneTask,
        game: GamificationService,
        now: datetime,
    ) -> TaskResult:
        points, unlocked = await self._award(
            game, business, TASK_COMPLETED, task.reward_points, task.id
        )
        if milestone.status == MilestoneStatus.PENDING:  # working on it is starting it
            # Conditional, like `start`: a start committed meanwhile keeps its started_at.
            await self.repo.mark_started(milestone.id, now)
            await self.session.refresh(milestone)
        completed, bonus, requested = False, 0, False
        if await self.repo.open_tasks(milestone.id) == 0:
            completed = True
            milestone.status = MilestoneStatus.COMPLETED
            milestone.completed_at = now
            bonus, also_unlocked = await self._award(
                game, business, MILESTONE_COMPLETED, milestone.reward_points, milestone.id
            )
            unlocked += also_unlocked
            await self.session.flush()
            if (
                self.roadmap_worker is not None
                and not await self.repo.count_active(business.id)
                and await self._roadmaps().quota_wait(business) is None
            ):
                _, requested = await request_roadmap(self.session, business.id, GenerationKind.NEXT)
        milestone.updated_at = now
        await self.session.flush()
        return TaskResult(
            await self._view(milestone),
            task.id,
            True,
            points,
            completed,
            bonus,
            requested,
            tuple(unlocked),
        )

    async def _reopened_task(
        self,
        business: BusinessProfile,
        milestone: Milestone,
        task: MilestoneTask,
        game: GamificationService,
        now: datetime,
    ) -> TaskResult:
        points = await self._take_back(game, business, TASK_REOPENED, task.id)
        bonus = 0
        if milestone.status == MilestoneStatus.COMPLETED:
            milestone.status = MilestoneStatus.IN_PROGRESS
            milestone.completed_at = None
            bonus = await self._take_back(game, business, MILESTONE_REOPENED, milestone.id)
        milestone.updated_at = now
        await self.session.flush()
        return TaskResult(await self._view(milestone), task.id, True, points, bonus=bonus)

    async def _award(
        self,
        game: GamificationService,
        business: BusinessProfile,
        reason: str,
        amount: int,
        ref_id: uuid.UUID,
    ) -> tuple[int, builtins.list[str]]:
        """Pay `amount` for `ref_id` unless it holds an award already, and only as much
        as today's cap leaves (the ledger row is written either way: it records what
        happened). Returns the points paid and the achievements that unlocked."""
        if await game.points_for(ref_id) > 0:
            return 0, []
        paid_today = await game.points_today(
            business.id,
            (TASK_COMPLETED, MILESTONE_COMPLETED),
            await game.daily_cap_start(business.id),
        )
        amount = max(0, min(amount, self.daily_cap - paid_today))
        award = await game.award_points(business.id, reason, amount, ref_id=ref_id)
        return amount, award.unlocked

    async def _take_back(
        self, game: GamificationService, business: BusinessProfile, reason: str, ref_id: uuid.UUID
    ) -> int:
        held = await game.points_for(ref_id)
        if held <= 0:
            return 0
        await game.award_points(business.id, reason, -held, ref_id=ref_id)
        return -held

    # --- helpers ----------------------------------------------------------------------------

    def _roadmaps(self) -> RoadmapRequests:
        return RoadmapRequests(
            self.session,
            generations_per_day=self.generations_per_day,
            roadmap_worker=self.roadmap_worker,
        )

    async def _lock(self, business: BusinessProfile) -> GamificationService:
        """Take the business lock; reads after it are current (see the module docstring)."""
        game = GamificationService(self.session)
        await game.lock_business(business.id)
        return game

    async def _own(self, business: BusinessProfile, milestone_id: uuid.UUID) -> Milestone:
        milestone = await self.repo.get(business.id, milestone_id)
        if milestone is None:
            raise NotFoundError(NOT_FOUND)
        return milestone

    async def _view(self, milestone: Milestone) -> MilestoneView:
        return MilestoneView(milestone, (await self.repo.tasks_of([milestone.id]))[milestone.id])
