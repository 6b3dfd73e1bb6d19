"""Queries on milestones, their tasks and roadmap generation requests."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.modules.milestone.models import (
    ACTIVE_STATUSES,
    OPEN_GENERATION_PREDICATE,
    OPEN_GENERATION_STATUSES,
    GenerationStatus,
    Milestone,
    MilestoneStatus,
    MilestoneTask,
    RoadmapGeneration,
)

_OPEN = RoadmapGeneration.status.in_(OPEN_GENERATION_STATUSES)  # type: ignore[attr-defined]


class MilestoneRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- milestones -----------------------------------------------------------------------

    async def get(self, business_id: uuid.UUID, milestone_id: uuid.UUID) -> Milestone | None:
        """The business's milestone unless deleted (another business's is not found)."""
        return (
            await self.session.execute(
                select(Milestone).where(
                    Milestone.id == milestone_id,
                    Milestone.business_id == business_id,
                    Milestone.deleted_at.is_(None),  # type: ignore[union-attr]
                )
            )
        ).scalar_one_or_none()

    async def list(
        self, business_id: uuid.UUID, statuses: Sequence[str] | None, limit: int, offset: int
    ) -> tuple[list[Milestone], int]:
        where = [Milestone.business_id == business_id, Milestone.deleted_at.is_(None)]  # type: ignore[union-attr]
        if statuses:
            where.append(Milestone.status.in_(statuses))  # type: ignore[attr-defined]
        total = await self.session.scalar(select(func.count()).select_from(Milestone).where(*where))
        rows = await self.session.execute(
            select(Milestone)
            .where(*where)
            .order_by(Milestone.position, Milestone.created_at, Milestone.id)  # type: ignore[arg-type]
            .limit(limit)
            .offset(offset)
        )
        return list(rows.scalars()), total or 0

    async def count_active(self, business_id: uuid.UUID) -> int:
        query = (
            select(func.count())
            .select_from(Milestone)
            .where(
                Milestone.business_id == business_id,
                Milestone.deleted_at.is_(None),  # type: ignore[union-attr]
                Milestone.status.in_(ACTIVE_STATUSES),  # type: ignore[attr-defined]
            )
        )
        return await self.session.scalar(query) or 0

    async def next_position(self, business_id: uuid.UUID) -> int:
        highest = await self.session.scalar(
            select(func.max(Milestone.position)).where(Milestone.business_id == business_id)
        )
        return 0 if highest is None else highest + 1

    async def mark_started(self, milestone_id: uuid.UUID, now: datetime) -> bool:
        """pending -> in_progress; False if it was not pending (any more)."""
        result = await self.session.execute(
            update(Milestone)
            .where(Milestone.id == milestone_id, Milestone.status == MilestoneStatus.PENDING)
            .values(status=MilestoneStatus.IN_PROGRESS, started_at=now, updated_at=now)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def soft_delete(self, milestone_id: uuid.UUID, now: datetime) -> None:
        """Mark deleted (callers hold the business lock and have read it undeleted)."""
        await self.session.execute(
            update(Milestone)
            .where(Milestone.id == milestone_id, Milestone.deleted_at.is_(None))  # type: ignore[union-attr]
            .values(deleted_at=now, updated_at=now)
        )

    async def completed(self, business_id: uuid.UUID, limit: int) -> list[Milestone]:
        """The most recently completed milestones, newest first."""
        rows = await self.session.execute(
            select(Milestone)
            .where(
                Milestone.business_id == business_id,
                Milestone.deleted_at.is_(None),  # type: ignore[union-attr]
                Milestone.completed_at.is_not(None),  # type: ignore[union-attr]
            )
            .order_by(Milestone.completed_at.desc())  # type: ignore[union-attr]
            .limit(limit)
        )
        return list(rows.scalars())

    async def of_generation(self, generation_id: uuid.UUID) -> list[Milestone]:
        rows = await self.session.execute(
            select(Milestone)
            .where(
                Milestone.generation_id == generation_id,
                Milestone.deleted_at.is_(None),  # type: ignore[union-attr]
            )
            .order_by(Milestone.position)  # type: ignore[arg-type]
        )
        return list(rows.scalars())

    # --- tasks ------------------------------------------------------------------------------

    async def tasks_of(
        self, milestone_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[MilestoneTask]]:
        out: dict[uuid.UUID, list[MilestoneTask]] = defaultdict(list)
        if not milestone_ids:
            return out
        rows = await self.session.execute(
            select(MilestoneTask)
            .where(MilestoneTask.milestone_id.in_(milestone_ids))  # type: ignore[attr-defined]
            .order_by(MilestoneTask.position, MilestoneTask.id)  # type: ignore[arg-type]
            # Fresh values, also for tasks loaded before a `mark_task` UPDATE.
            .execution_options(populate_existing=True)
        )
        for task in rows.scalars():
            out[task.milestone_id].append(task)
        return out

    async def task(self, milestone_id: uuid.UUID, task_id: uuid.UUID) -> MilestoneTask | None:
        return (
            await self.session.execute(
                select(MilestoneTask).where(
                    MilestoneTask.id == task_id, MilestoneTask.milestone_id == milestone_id
                )
            )
        ).scalar_one_or_none()

    async def milestone_of_task(
        self, business_id: uuid.UUID, task_id: uuid.UUID
    ) -> uuid.UUID | None:
        """The milestone holding the task, if it is this business's and not deleted."""
        return await self.session.scalar(
            select(Milestone.id)
            .join(MilestoneTask, MilestoneTask.milestone_id == Milestone.id)
            .where(
                MilestoneTask.id == task_id,
                Milestone.business_id == business_id,
                Milestone.deleted_at.is_(None),  # type: ignore[union-attr]
            )
        )

    async def mark_task(self, task_id: uuid.UUID, done: bool, now: datetime) -> bool:
        """Flip `done`; False if the task already was in that state (nothing changed)."""
        result = await self.session.execute(
            update(MilestoneTask)
            .where(MilestoneTask.id == task_id, MilestoneTask.done.is_(not done))  # type: ignore[attr-defined]
            .values(done=done, done_at=now if done else None)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def open_tasks(self, milestone_id: uuid.UUID) -> int:
        return (
            await self.session.scalar(
                select(func.count())
                .select_from(MilestoneTask)
                .where(
                    MilestoneTask.milestone_id == milestone_id,
                    MilestoneTask.done.is_(False),  # type: ignore[attr-defined]
                )
            )
            or 0
        )


class GenerationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, generation_id: uuid.UUID) -> RoadmapGeneration | None:
        return await self.session.get(RoadmapGeneration, generation_id, populate_existing=True)

    async def open_for(self, business_id: uuid.UUID) -> RoadmapGeneration | None:
        return (
            await self.session.execute(
                select(RoadmapGeneration).where(RoadmapGeneration.business_id == business_id, _OPEN)
            )
        ).scalar_one_or_none()

    async def latest_for(self, business_id: uuid.UUID) -> RoadmapGeneration | None:
        return (
            await self.session.execute(
                select(RoadmapGeneration)
                .where(RoadmapGeneration.business_id == business_id)
                .order_by(RoadmapGeneration.created_at.desc())  # type: ignore[attr-defined]
                .limit(1)
            )
        ).scalar_one_or_none()

    async def created_since(self, business_id: uuid.UUID, since: datetime) -> list[datetime]:
        """When this business's requests since `since` were made, oldest first."""
        rows = await self.session.execute(
            select(RoadmapGeneration.created_at)
            .where(
                RoadmapGeneration.business_id == business_id,
                RoadmapGeneration.created_at >= since,  # type: ignore[operator]
            )
            .order_by(RoadmapGeneration.created_at)  # type: ignore[arg-type]
        )
        return list(rows.scalars())

    async def insert_unless_open(
        self, business_id: uuid.UUID, kind: str, focus: str, now: datetime
    ) -> bool:
        """Record a pending request unless one is open (the partial unique index decides,
        so parallel triggers cannot both insert). True if this call inserted it."""
        table = RoadmapGeneration.__table__
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        result = await self.session.execute(
            insert.values(
                id=uuid.uuid4(),
                business_id=business_id,
                kind=kind,
                status=GenerationStatus.PENDING,
                stage="queued",
                focus=focus,
                attempts=0,
                created_at=now,
            ).on_conflict_do_nothing(
                index_elements=["business_id"],
                index_where=text(OPEN_GENERATION_PREDICATE),
            )
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def claimable(self, now: datetime, limit: int) -> list[uuid.UUID]:
        rows = await self.session.execute(
            select(RoadmapGeneration.id)
            .where(self._claimable(now))
            .order_by(RoadmapGeneration.created_at)  # type: ignore[arg-type]
            .limit(limit)
        )
        return list(rows.scalars())

    async def claim(
        self, generation_id: uuid.UUID, claim: uuid.UUID, now: datetime, lease_until: datetime
    ) -> bool:
        """Take a pending request, or a running one whose worker's lease ran out."""
        result = await self.session.execute(
            update(RoadmapGeneration)
            .where(RoadmapGeneration.id == generation_id, self._claimable(now))
            .values(
                status=GenerationStatus.RUNNING,
                claim=claim,
                lease_until=lease_until,
                stage="thinking",
            )
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def update_claimed(
        self, generation_id: uuid.UUID, claim: uuid.UUID, **values: object
    ) -> bool:
        """Change a request this worker still holds; False if the claim was lost."""
        result = await self.session.execute(
            update(RoadmapGeneration)
            .where(
                RoadmapGeneration.id == generation_id,
                RoadmapGeneration.claim == claim,
                RoadmapGeneration.status == GenerationStatus.RUNNING,
            )
            .values(**values)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def release(self, claims: Sequence[uuid.UUID]) -> None:
        """Hand running requests back to the queue (a worker shutting down cleanly)."""
        if claims:
            await self.session.execute(
                update(RoadmapGeneration)
                .where(
                    RoadmapGeneration.claim.in_(claims),  # type: ignore[union-attr]
                    RoadmapGeneration.status == GenerationStatus.RUNNING,
                )
                .values(
                    status=GenerationStatus.PENDING, claim=None, lease_until=None, stage="queued"
                )
            )

    @staticmethod
    def _claimable(now: datetime):  # type: ignore[no-untyped-def]
        return or_(
            RoadmapGeneration.status == GenerationStatus.PENDING,
            and_(
                RoadmapGeneration.status == GenerationStatus.RUNNING,
                RoadmapGeneration.lease_until < now,  # type: ignore[operator]
            ),
        )
