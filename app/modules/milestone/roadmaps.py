"""Roadmap generation requests: recording one (an open request is joined, never doubled),
the owner's quota per 24 hours, where a request stands, and saving what the roadmap
worker drafted. The worker (`worker`) runs the requests; the milestone service asks for
the next roadmap when the last active milestone is completed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.background import Worker
from app.core.config import Settings
from app.core.errors import ConflictError, NotFoundError, TooManyRequestsError
from app.db.types import utcnow
from app.modules.gamification.service import GamificationService
from app.modules.milestone.models import GenerationKind, GenerationStatus, RoadmapGeneration
from app.modules.milestone.plans import MilestonePlan, MilestoneView, new_milestone
from app.modules.milestone.repository import GenerationRepository, MilestoneRepository

if TYPE_CHECKING:  # the entity the business service hands out
    from app.modules.business.service import BusinessProfile

QUOTA_WINDOW = timedelta(days=1)


async def request_roadmap(
    session: AsyncSession, business_id: uuid.UUID, kind: str, focus: str = ""
) -> tuple[RoadmapGeneration, bool]:
    """Record a roadmap request in the caller's transaction (no commit), or join the one
    already open for this business. Returns (request, whether this call created it)."""
    repo = GenerationRepository(session)
    for _ in range(3):  # an open request can finish between our insert and our read
        created = await repo.insert_unless_open(business_id, kind, focus, utcnow())
        generation = await repo.open_for(business_id)
        if generation is not None:
            return generation, created
    raise ConflictError("A roadmap request is changing right now; please retry")


class RoadmapRequests:
    def __init__(
        self, session: AsyncSession, *, generations_per_day: int, roadmap_worker: Worker | None
    ) -> None:
        self.session = session
        self.repo = MilestoneRepository(session)
        self.generations = GenerationRepository(session)
        self.generations_per_day = generations_per_day  # requests per business in 24 hours
        self.roadmap_worker = roadmap_worker  # None while no LLM is configured: no generation

    @classmethod
    def for_settings(
        cls, session: AsyncSession, settings: Settings, roadmap_worker: Worker | None
    ) -> RoadmapRequests:
        return cls(
            session,
            generations_per_day=settings.ROADMAP_GENERATIONS_PER_DAY,
            roadmap_worker=roadmap_worker,
        )

    async def request(
        self, business: BusinessProfile, focus: str
    ) -> tuple[RoadmapGeneration, bool]:
        """The owner asks for a roadmap: joins an open request, or records a new one if
        the roadmap has no active milestones (409 otherwise) and today's quota allows
        (429). Always ends the transaction: the caller may hold this session through a
        long progress stream."""
        await GamificationService(self.session).lock_business(business.id)
        generation = await self.generations.open_for(business.id)
        created = False
        if generation is None:
            active = await self.repo.count_active(business.id)
            if active:
                raise ConflictError(
                    f"Your roadmap still has {active} active milestone(s); complete or "
                    "delete them before asking for a new roadmap"
                )
            wait = await self.quota_wait(business)
            if wait is not None:
                raise TooManyRequestsError(
                    f"At most {self.generations_per_day} roadmap requests in 24 hours; "
                    f"the next is possible in {wait // 60 + 1} minute(s)",
                    retry_after=wait,
                )
            generation, created = await request_roadmap(
                self.session, business.id, GenerationKind.REQUESTED, focus
            )
        await self.session.commit()
        if created and self.roadmap_worker is not None:
            self.roadmap_worker.wake()
        return generation, created

    async def quota_wait(self, business: BusinessProfile) -> int | None:
        """None while a roadmap request is allowed; else the seconds until one is (the
        quota counts the last 24 hours)."""
        now = utcnow()
        made = await self.generations.created_since(business.id, now - QUOTA_WINDOW)
        if len(made) < self.generations_per_day:
            return None
        frees_at = made[len(made) - self.generations_per_day] + QUOTA_WINDOW
        return max(1, int((frees_at - now).total_seconds()) + 1)

    async def latest(self, business: BusinessProfile) -> RoadmapGeneration:
        generation = await self.generations.latest_for(business.id)
        if generation is None:
            raise NotFoundError("No roadmap has been requested for your business yet")
        return generation

    async def state(
        self, business_id: uuid.UUID, generation_id: uuid.UUID
    ) -> tuple[RoadmapGeneration | None, list[MilestoneView]]:
        """A request as it is now and, once it succeeded, the milestones it saved."""
        generation = await self.generations.get(generation_id)
        if generation is None or generation.business_id != business_id:
            return None, []
        if generation.status != GenerationStatus.SUCCEEDED:
            return generation, []
        milestones = await self.repo.of_generation(generation_id)
        tasks = await self.repo.tasks_of([m.id for m in milestones])
        return generation, [MilestoneView(m, tasks[m.id]) for m in milestones]

    async def save_generated(
        self, generation_id: uuid.UUID, claim: uuid.UUID, plans: Sequence[MilestonePlan]
    ) -> list[MilestoneView] | None:
        """Save a generated roadmap and finish its request, in one transaction.

        Nothing is saved if this worker no longer holds the request (None), or if the
        business has active milestones again (the request ends as skipped, []).
        """
        generations = self.generations
        generation = await generations.get(generation_id)
        if generation is None:
            return None
        await GamificationService(self.session).lock_business(generation.business_id)
        now = utcnow()
        if await self.repo.count_active(generation.business_id):
            held = await generations.update_claimed(
                generation_id,
                claim,
                status=GenerationStatus.SKIPPED,
                stage="done",
                error="The roadmap had active milestones again; nothing was added",
                finished_at=now,
            )
            await self.session.commit()
            return [] if held else None
        if not await generations.update_claimed(
            generation_id, claim, status=GenerationStatus.SUCCEEDED, stage="done", finished_at=now
        ):
            await self.session.rollback()
            return None
        position = await self.repo.next_position(generation.business_id)
        views = [
            new_milestone(generation.business_id, plan, position + i, generation_id=generation_id)
            for i, plan in enumerate(plans)
        ]
        for view in views:
            self.session.add(view.milestone)
            self.session.add_all(view.tasks)
        await self.session.commit()
        return views
