"""Roadmap calls of the web client (#25-#28); a business is required (404 without)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import CurrentBusiness, SessionDep
from app.client_api.errors import ClientError
from app.client_api.views import UnlockedAchievement, first_unlocked
from app.modules.milestone.models import MilestoneStatus, MilestoneTask
from app.modules.milestone.routes import MilestoneServiceDep
from app.modules.milestone.service import MilestoneView

router = APIRouter(
    prefix="/milestones",
    responses={404: {"model": ClientError, "description": "Not found (or no business yet)"}},
)

PAGE = 100  # the native page limit; the client gets the whole roadmap at once


class ClientTask(BaseModel):
    id: uuid.UUID
    milestone_id: uuid.UUID
    title: str
    order: int
    is_completed: bool
    completed_at: datetime | None
    reward_points: int


class ClientTaskDone(ClientTask):
    unlocked_achievement: UnlockedAchievement | None = None


class ClientMilestone(BaseModel):
    id: uuid.UUID
    title: str
    description: str
    status: MilestoneStatus
    order: int
    level: int
    reward_points: int
    is_generated: bool
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    tasks: list[ClientTask]


def _task(task: MilestoneTask) -> ClientTask:
    return ClientTask(
        id=task.id,
        milestone_id=task.milestone_id,
        title=task.title,
        order=task.position,
        is_completed=task.done,
        completed_at=task.done_at,
        reward_points=task.reward_points,
    )


def _milestone(view: MilestoneView) -> ClientMilestone:
    m = view.milestone
    return ClientMilestone(
        id=m.id,
        title=m.title,
        description=m.description,
        status=MilestoneStatus(m.status),
        order=m.position,
        level=m.difficulty,
        reward_points=m.reward_points,
        is_generated=m.ai_generated,
        started_at=m.started_at,
        completed_at=m.completed_at,
        created_at=m.created_at,
        updated_at=m.updated_at,
        tasks=[_task(t) for t in view.tasks],
    )


@router.get("/", response_model=list[ClientMilestone])
@router.get("", response_model=list[ClientMilestone], include_in_schema=False)
async def client_milestones(
    business: CurrentBusiness, milestones: MilestoneServiceDep
) -> list[ClientMilestone]:
    """The whole roadmap in order, each milestone with its tasks (the client's path has
    the trailing slash; both spellings answer, neither redirects)."""
    out: list[ClientMilestone] = []
    while True:
        views, total = await milestones.list(business, None, PAGE, len(out))
        out += [_milestone(v) for v in views]
        if not views or len(out) >= total:
            return out


@router.get("/{milestone_id}", response_model=ClientMilestone)
async def client_milestone(
    milestone_id: uuid.UUID, business: CurrentBusiness, milestones: MilestoneServiceDep
) -> ClientMilestone:
    return _milestone(await milestones.get(business, milestone_id))


@router.post(
    "/{milestone_id}/start",
    response_model=ClientMilestone,
    responses={409: {"model": ClientError, "description": "Already completed"}},
)
async def client_start_milestone(
    milestone_id: uuid.UUID, business: CurrentBusiness, milestones: MilestoneServiceDep
) -> ClientMilestone:
    return _milestone(await milestones.start(business, milestone_id))


@router.post("/tasks/{task_id}/complete", response_model=ClientTaskDone)
async def client_complete_task(
    task_id: uuid.UUID,
    business: CurrentBusiness,
    milestones: MilestoneServiceDep,
    session: SessionDep,
) -> ClientTaskDone:
    """Tick a task of my roadmap, found by its id alone. `reward_points` is the task's
    reward (the daily cap may pay less); a repeat answers the same task, unchanged."""
    milestone_id = await milestones.milestone_of_task(business, task_id)
    result = await milestones.set_task_done(business, milestone_id, task_id, True)
    task = next(t for t in result.view.tasks if t.id == task_id)
    return ClientTaskDone(
        **_task(task).model_dump(),
        unlocked_achievement=await first_unlocked(session, result.unlocked),
    )
