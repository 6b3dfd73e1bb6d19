"""Request and response shapes for the roadmap."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.core.types import MultiLine, SingleLine
from app.modules.milestone.models import (
    GenerationKind,
    GenerationStatus,
    Milestone,
    MilestoneStatus,
    MilestoneTask,
)

MAX_TASKS = 10
MAX_ORDER = 100_000

MilestoneTitle = Annotated[str, SingleLine(200)]
MilestoneDescription = Annotated[str, MultiLine(2000)]
TaskTitle = Annotated[str, SingleLine(300)]
Difficulty = Annotated[int, Field(ge=1, le=5, strict=True, description="1 (easy) to 5 (hard)")]
Order = Annotated[
    int, Field(ge=0, le=MAX_ORDER, strict=True, description="Position in the roadmap")
]


class MilestoneCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: MilestoneTitle
    description: MilestoneDescription = ""
    difficulty: Difficulty = 2
    tasks: list[TaskTitle] = Field(min_length=1, max_length=MAX_TASKS)
    order: Order | None = Field(default=None, description="Default: after the last milestone")


class MilestoneUpdate(BaseModel):
    """Rewards and tasks are fixed once created; the words and the order can change."""

    model_config = ConfigDict(extra="forbid")

    title: MilestoneTitle | None = None
    description: MilestoneDescription | None = None
    order: Order | None = None


class TaskPublic(BaseModel):
    id: uuid.UUID
    title: str
    order: int
    done: bool
    done_at: datetime | None
    reward_points: int


class MilestonePublic(BaseModel):
    id: uuid.UUID
    title: str
    description: str
    status: MilestoneStatus
    order: int
    difficulty: int
    reward_points: int = Field(description="Bonus for completing the whole milestone")
    ai_generated: bool
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    tasks: list[TaskPublic]
    tasks_done: int
    tasks_total: int


class MilestonePage(BaseModel):
    items: list[MilestonePublic]
    total: int
    limit: int
    offset: int


class TaskOutcome(BaseModel):
    """What a task (un)completion changed; points are negative when taken back."""

    milestone: MilestonePublic
    task_id: uuid.UUID
    changed: bool = Field(description="False when the task already was in that state")
    points_awarded: int
    milestone_completed: bool
    bonus_awarded: int
    next_roadmap_requested: bool


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    focus: Annotated[str, SingleLine(500, min_length=0)] = Field(
        default="", description="Optional: what the owner wants the roadmap to focus on"
    )


class GenerationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: GenerationKind
    status: GenerationStatus
    stage: str
    attempts: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None


def milestone_public(milestone: Milestone, tasks: list[MilestoneTask]) -> MilestonePublic:
    return MilestonePublic(
        id=milestone.id,
        title=milestone.title,
        description=milestone.description,
        status=MilestoneStatus(milestone.status),
        order=milestone.position,
        difficulty=milestone.difficulty,
        reward_points=milestone.reward_points,
        ai_generated=milestone.ai_generated,
        started_at=milestone.started_at,
        completed_at=milestone.completed_at,
        created_at=milestone.created_at,
        updated_at=milestone.updated_at,
        tasks=[
            TaskPublic(
                id=t.id,
                title=t.title,
                order=t.position,
                done=t.done,
                done_at=t.done_at,
                reward_points=t.reward_points,
            )
            for t in tasks
        ],
        tasks_done=sum(t.done for t in tasks),
        tasks_total=len(tasks),
    )
