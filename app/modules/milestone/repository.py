"""Queries on milestones, their tasks and roadmap generation requests."""

from __future__ import annotations

import builtins
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.helpers import rows_touched, table_of
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

_OPEN = col(RoadmapGeneration.status).in_(OPEN_GENERATION_STATUSES)


class MilestoneRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- milestones -----------------------------------------------------------------------

    async def get(self, business_id: uuid.UUID, milestone_id: uuid.UUID) -> Milestone | None:
        """The business's milestone unless deleted (another business's is not found)."""
        return (
            await self.session.execute(
                select(Milestone).where(
                    col(Milestone.id) == milestone_id,
                    col(Milestone.business_id) == business_id,
                    col(Milestone.deleted_at).is_(None),
                )
            )
        ).scalar_one_or_none()

    async def list(
        self, business_id: uuid.UUID, statuses: Sequence[str] | None, limit: int, offset: int
    ) -> tuple[list[Milestone], int]:
        where = [col(Milestone.business_id) == business_id, col(Milestone.deleted_at).is_(None)]
        if statuses:
            where.append(col(Milestone.status).in_(statuses))
        total = await self.session.scalar(select(func.count()).select_from(Milestone).where(*where))
        rows = await self.session.execute(
            select(Milestone)
            .where(*where)
            .order_by(col(Milestone.position), col(Milestone.created_at), col(Milestone.id))
            .limit(limit)
            .offset(offset)
        )
        return list(rows.scalars()), total or 0

    async def count_active(self, business_id: uuid.UUID) -> int:
        query = (
            select(func.count())
            .select_from(Milestone)
            .where(
                col(Milestone.business_id) == business_id,
                col(Milestone.deleted_at).is_(None),
                col(Milestone.status).in_(ACTIVE_STATUSES),
            )
        )
        return await self.session.scalar(query) or 0

    async def next_position(self, business_id: uuid.UUID) -> int:
        highest = await self.session.scalar(
            select(func.max(col(Milestone.position))).where(
                col(Milestone.business_id) == business_id
            )
        )
        return 0 if highest is None else highest + 1

    async def mark_started(self, milestone_id: uuid.UUID, now: datetime) -> bool:
        """pending -> in_progress; False if it was not pending (any more)."""
        result = await self.session.execute(
            update(Milestone)
            .where(
                col(Milestone.id) == milestone_id,
                col(Milestone.status) == MilestoneStatus.PENDING,
            )
            .values(status=MilestoneStatus.IN_PROGRESS, started_at=now, updated_at=now)
        )
        return rows_touched(result) == 1

    async def soft_delete(self, milestone_id: uuid.UUID, now: datetime) -> None:
        """Mark deleted (callers hold the business lock and have read it undeleted)."""
        await self.session.execute(
            update(Milestone)
            .where(col(Milestone.id) == milestone_id, col(Milestone.deleted_at).is_(None))
            .values(deleted_at=now, updated_at=now)
        )

    async def completed(self, business_id: uuid.UUID, limit: int) -> builtins.list[Milestone]:
        """The most recently completed milestones, newest first."""
        rows = await self.session.execute(
            select(Milestone)
            .where(
                col(Milestone.business_id) == business_id,
                col(Milestone.deleted_at).is_(None),
                col(Milestone.completed_at).is_not(None),
            )
            .order_by(col(Milestone.completed_at).desc())
            .limit(limit)
        )
        return list(rows.scalars())

    async def of_generation(self, generation_id: uuid.UUID) -> builtins.list[Milestone]:
        rows = await self.session.execute(
            select(Milestone)
            .where(
                col(Milestone.generation_id) == generation_id,
                col(Milestone.deleted_at).is_(None),
            )
            .order_by(col(Milestone.position))
        )
        return list(rows.scalars())

    # --- tasks ------------------------------------------------------------------------------

    async def tasks_of(
        self, milestone_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, builtins.list[MilestoneTask]]:
        out: dict[uuid.UUID, builtins.list[MilestoneTask]] = defaultdict(list)
        if not milestone_ids:
            return out
        rows = await self.session.execute(
            select(MilestoneTask)
            .where(col(MilestoneTask.milestone_id).in_(milestone_ids))
            .order_by(col(MilestoneTask.position), col(MilestoneTask.id))
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
                    col(MilestoneTask.id) == task_id,
                    col(MilestoneTask.milestone_id) == milestone_id,
                )
            )
        ).scalar_one_or_none()

    async def milestone_of_task(
        self, business_id: uuid.UUID, task_id: uuid.UUID
    ) -> uuid.UUID | None:
        """The milestone holding the task, if it is this business's and not deleted."""
        return await self.session.scalar(
            select(col(Milestone.id))
            .join(MilestoneTask, col(MilestoneTask.milestone_id) == col(Milestone.id))
            .where(
                col(MilestoneTask.id) == task_id,
                col(Milestone.business_id) == business_id,
                col(Milestone.deleted_at).is_(None),
            )
        )

    async def mark_task(self, task_id: uuid.UUID, done: bool, now: datetime) -> bool:
        """Flip `done`; False if the task already was in that state (nothing changed)."""
        result = await self.session.execute(
            update(MilestoneTask)
            .where(col(MilestoneTask.id) == task_id, col(MilestoneTask.done).is_(not done))
            .values(done=done, done_at=now if done else None)
        )
        return rows_touched(result) == 1

    async def open_tasks(self, milestone_id: uuid.UUID) -> int:
        return (
            await self.session.scalar(
                select(func.count())
                .select_from(MilestoneTask)
                .where(
                    col(MilestoneTask.milestone_id) == milestone_id,
                    col(MilestoneTask.done).is_(False),
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
                select(RoadmapGeneration).where(
                    col(RoadmapGeneration.business_id) == business_id, _OPEN
                )
            )
        ).scalar_one_or_none()

    async def latest_for(self, business_id: uuid.UUID) -> RoadmapGeneration | None:
        return (
            await self.session.execute(
                select(RoadmapGeneration)
                .where(col(RoadmapGeneration.business_id) == business_id)
                .order_by(col(RoadmapGeneration.created_at).desc())
                .limit(1)
            )
        ).scalar_one_or_none()

    async def created_since(
        self, business_id: uuid.UUID, since: datetime
    ) -> builtins.list[datetime]:
        """When this business's requests since `since` were made, oldest first."""
        rows = await self.session.execute(
            select(col(RoadmapGeneration.created_at))
            .where(
                col(RoadmapGeneration.business_id) == business_id,
                col(RoadmapGeneration.created_at) >= since,
            )
            .order_by(col(RoadmapGeneration.created_at))
        )
        return list(rows.scalars())

    async def insert_unless_open(
        self, business_id: uuid.UUID, kind: str, focus: str, now: datetime
    ) -> bool:
        """Record a pending request unless one is open (the partial unique index decides,
        so parallel triggers cannot both insert). True if this call inserted it."""
        table = table_of(RoadmapGeneration)
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
        return rows_touched(result) == 1

    async def claimable(self, now: datetime, limit: int) -> builtins.list[uuid.UUID]:
        rows = await self.session.execute(
            select(col(RoadmapGeneration.id))
            .where(self._claimable(now))
            .order_by(col(RoadmapGeneration.created_at))
            .limit(limit)
        )
        return list(rows.scalars())

    async def claim(
        self, generation_id: uuid.UUID, claim: uuid.UUID, now: datetime, lease_until: datetime
    ) -> bool:
        """Take a pending request, or a running one whose worker's lease ran out."""
        result = await self.session.execute(
            update(RoadmapGeneration)
            .where(col(RoadmapGeneration.id) == generation_id, self._claimable(now))
            .values(
                status=GenerationStatus.RUNNING,
                claim=claim,
                lease_until=lease_until,
                stage="thinking",
            )
        )
        return rows_touched(result) == 1

    async def update_claimed(
        self, generation_id: uuid.UUID, claim: uuid.UUID, **values: object
    ) -> bool:
        """Change a request this worker still holds; False if the claim was lost."""
        result = await self.session.execute(
            update(RoadmapGeneration)
            .where(
                col(RoadmapGeneration.id) == generation_id,
                col(RoadmapGeneration.claim) == claim,
                col(RoadmapGeneration.status) == GenerationStatus.RUNNING,
            )
            .values(**values)
        )
        return rows_touched(result) == 1

    async def release(self, claims: Sequence[uuid.UUID]) -> None:
        """Hand running requests back to the queue (a worker shutting down cleanly)."""
        if claims:
            await self.session.execute(
                update(RoadmapGeneration)
                .where(
                    col(RoadmapGeneration.claim).in_(claims),
                    col(RoadmapGeneration.status) == GenerationStatus.RUNNING,
                )
                .values(
                    status=GenerationStatus.PENDING, claim=None, lease_until=None, stage="queued"
                )
            )

    @staticmethod
    def _claimable(now: datetime) -> ColumnElement[bool]:
        return or_(
            col(RoadmapGeneration.status) == GenerationStatus.PENDING,
            and_(
                col(RoadmapGeneration.status) == GenerationStatus.RUNNING,
                col(RoadmapGeneration.lease_until) < now,
            ),
        )
