"""The roadmap: milestones with ordered tasks, and the requests to generate them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    text,
)
from sqlmodel import Field, SQLModel

from app.db.types import UTCDateTime, utcnow


class MilestoneStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


ACTIVE_STATUSES = (MilestoneStatus.PENDING, MilestoneStatus.IN_PROGRESS)


class GenerationKind(StrEnum):
    INITIAL = "initial"  # the first roadmap, requested when the profile is created
    NEXT = "next"  # requested when the last active milestone completes
    REQUESTED = "requested"  # the owner asked (POST /milestones/generate)


class GenerationStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # the business had active milestones again when it was due


OPEN_GENERATION_STATUSES = (GenerationStatus.PENDING, GenerationStatus.RUNNING)
# The partial unique index's predicate, written out: PostgreSQL matches an ON CONFLICT
# target to a partial index only by this literal text (bound parameters do not match).
OPEN_GENERATION_PREDICATE = "status IN ('pending', 'running')"


class Milestone(SQLModel, table=True):
    __tablename__ = "milestones"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'in_progress', 'completed')", name="ck_milestone_status"
        ),
        CheckConstraint("difficulty BETWEEN 1 AND 5", name="ck_milestone_difficulty"),
        CheckConstraint("reward_points >= 0", name="ck_milestone_reward"),
        Index("ix_milestones_business_position", "business_id", "position"),
        Index("ix_milestones_generation", "generation_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    business_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid(), ForeignKey("business_profiles.id", ondelete="CASCADE"), nullable=False
        )
    )
    title: str = Field(sa_column=Column(String(200), nullable=False))
    description: str = Field(default="", sa_column=Column(Text(), nullable=False))
    status: str = Field(
        default=MilestoneStatus.PENDING, sa_column=Column(String(16), nullable=False)
    )
    position: int = Field(sa_column=Column(Integer(), nullable=False))
    difficulty: int = Field(default=1, sa_column=Column(Integer(), nullable=False))
    # The bonus for completing the whole milestone (each task carries its own points).
    reward_points: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False))
    ai_generated: bool = Field(default=False, sa_column=Column(Boolean(), nullable=False))
    generation_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(
            Uuid(), ForeignKey("roadmap_generations.id", ondelete="SET NULL"), nullable=True
        ),
    )
    started_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    completed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    deleted_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class MilestoneTask(SQLModel, table=True):
    __tablename__ = "milestone_tasks"
    __table_args__ = (
        CheckConstraint("reward_points >= 0", name="ck_milestone_task_reward"),
        Index("ix_milestone_tasks_milestone_position", "milestone_id", "position"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    milestone_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("milestones.id", ondelete="CASCADE"), nullable=False)
    )
    title: str = Field(sa_column=Column(String(300), nullable=False))
    position: int = Field(sa_column=Column(Integer(), nullable=False))
    done: bool = Field(default=False, sa_column=Column(Boolean(), nullable=False))
    done_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    reward_points: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False))


class RoadmapGeneration(SQLModel, table=True):
    """A request to generate a roadmap: recorded first, then claimed and run by a worker.

    At most one is open (pending or running) per business — a partial unique index — so
    two triggers for one business join the same request instead of making two roadmaps.
    A running request holds a lease (`lease_until`, `claim`): a worker that dies leaves it
    to expire, and any worker may then take it over.
    """

    __tablename__ = "roadmap_generations"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')",
            name="ck_roadmap_generation_status",
        ),
        Index(
            "ux_roadmap_generation_open",
            "business_id",
            unique=True,
            postgresql_where=text(OPEN_GENERATION_PREDICATE),
            sqlite_where=text(OPEN_GENERATION_PREDICATE),
        ),
        Index("ix_roadmap_generations_status", "status"),
        Index("ix_roadmap_generations_business_created", "business_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    business_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid(), ForeignKey("business_profiles.id", ondelete="CASCADE"), nullable=False
        )
    )
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    status: str = Field(
        default=GenerationStatus.PENDING, sa_column=Column(String(16), nullable=False)
    )
    # What the worker is doing now, for the progress stream: queued, thinking, saving.
    stage: str = Field(default="queued", sa_column=Column(String(16), nullable=False))
    focus: str = Field(default="", sa_column=Column(String(500), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer(), nullable=False))
    claim: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid(), nullable=True))
    lease_until: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    error: str | None = Field(default=None, sa_column=Column(String(1000), nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
