"""`/milestones`: my roadmap — milestones, their tasks, and AI generation (SSE)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.api.deps import (
    ContextDep,
    CurrentBusiness,
    MilestoneServiceDep,
    RoadmapRequestsDep,
    RoadmapWorkerDep,
)
from app.context import AppContext
from app.core.errors import DB_UNAVAILABLE_DETAIL, is_db_unavailable
from app.core.llm import LLMNotConfiguredError
from app.core.types import Limit, Offset
from app.modules.milestone.models import GenerationStatus, MilestoneStatus, RoadmapGeneration
from app.modules.milestone.plans import MilestoneView
from app.modules.milestone.roadmaps import RoadmapRequests
from app.modules.milestone.schemas import (
    GenerateRequest,
    GenerationPublic,
    MilestoneCreate,
    MilestonePage,
    MilestonePublic,
    MilestoneUpdate,
    TaskOutcome,
    milestone_public,
)
from app.modules.milestone.service import TaskResult

router = APIRouter(
    prefix="/milestones",
    tags=["milestones"],
    responses={
        401: {"description": "Not authenticated"},
        404: {"description": "Not found (or no business profile yet)"},
    },
)

POLL_FIRST_SECONDS = 0.5
POLL_MAX_SECONDS = 2.0


def _public(view: MilestoneView) -> MilestonePublic:
    return milestone_public(view.milestone, view.tasks)


def _outcome(result: TaskResult) -> TaskOutcome:
    return TaskOutcome(
        milestone=_public(result.view),
        task_id=result.task_id,
        changed=result.changed,
        points_awarded=result.points,
        milestone_completed=result.milestone_completed,
        bonus_awarded=result.bonus,
        next_roadmap_requested=result.next_roadmap_requested,
    )


@router.get("", response_model=MilestonePage)
async def list_milestones(
    business: CurrentBusiness,
    milestones: MilestoneServiceDep,
    status_: Annotated[
        list[MilestoneStatus] | None,
        Query(alias="status", description="Only these statuses (repeat for several)"),
    ] = None,
    limit: Annotated[Limit, Query()] = 20,
    offset: Annotated[Offset, Query()] = 0,
) -> MilestonePage:
    """My roadmap in order, each milestone with its tasks. Deleted ones are not shown."""
    views, total = await milestones.list(business, status_, limit, offset)
    return MilestonePage(items=[_public(v) for v in views], total=total, limit=limit, offset=offset)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=MilestonePublic)
async def create_milestone(
    data: MilestoneCreate, business: CurrentBusiness, milestones: MilestoneServiceDep
) -> MilestonePublic:
    """Add a milestone of my own. It earns the base rate whatever its difficulty (the
    difficulty is my own claim; only a generated roadmap's sets the rewards)."""
    return _public(await milestones.create(business, data))


@router.get("/generation", response_model=GenerationPublic)
async def latest_generation(
    business: CurrentBusiness, requests: RoadmapRequestsDep
) -> GenerationPublic:
    """The latest roadmap request and where it stands (e.g. after creating a profile)."""
    return GenerationPublic.model_validate(await requests.latest(business))


async def start_generation(
    business: CurrentBusiness,
    requests: RoadmapRequestsDep,
    roadmap_worker: RoadmapWorkerDep,
    body: GenerateRequest | None = None,
) -> tuple[RoadmapGeneration, bool]:
    """Refusals come before the stream, as plain JSON errors: 503 without an LLM, 409
    while the roadmap has active milestones, 429 past the daily quota. An open request
    is joined, not repeated (its focus stays)."""
    if roadmap_worker is None:
        raise LLMNotConfiguredError()
    return await requests.request(business, body.focus if body else "")


@router.post(
    "/generate",
    response_class=EventSourceResponse,
    responses={
        200: {"description": "Events: generation, progress, milestone, error, done"},
        409: {"description": "The roadmap still has active milestones"},
        429: {"description": "Daily roadmap quota used"},
        503: {"description": "No LLM configured"},
    },
)
async def generate(
    context: ContextDep,
    business: CurrentBusiness,
    roadmap_worker: RoadmapWorkerDep,
    started: Annotated[tuple[RoadmapGeneration, bool], Depends(start_generation)],
) -> AsyncIterator[ServerSentEvent]:
    """Ask for a new roadmap and follow it as Server-Sent Events.

    The request is recorded and run in the background: closing the stream does not
    stop it (see `GET /milestones/generation`). Events: `generation` (first), `progress`
    on each change, one `milestone` per saved milestone, then `done`, or `error`.
    """
    generation, created = started
    yield ServerSentEvent(
        event="generation",
        data={
            "generation_id": str(generation.id),
            "kind": generation.kind,
            "status": generation.status,
            "created": created,
        },
    )
    assert roadmap_worker is not None  # start_generation refused the request otherwise
    async for event in _follow(context, business.id, generation.id, roadmap_worker.longest_run):
        yield event


async def _follow(
    context: AppContext,
    business_id: uuid.UUID,
    generation_id: uuid.UUID,
    patience: float,
) -> AsyncIterator[ServerSentEvent]:
    """Poll the request's row (whichever process runs it) and report its changes; the
    pause grows from 0.5 s to 2 s while nothing changes."""
    deadline = time.monotonic() + patience
    seen: tuple[str, str, int] | None = None
    pause = POLL_FIRST_SECONDS
    while time.monotonic() < deadline:
        try:
            async with context.db.sessionmaker() as session:
                requests = RoadmapRequests.for_settings(
                    session, context.settings, context.roadmap_worker
                )
                generation, views = await requests.state(business_id, generation_id)
        except Exception as exc:
            if not is_db_unavailable(exc):
                raise
            yield ServerSentEvent(
                event="error",
                data={"code": "database_unavailable", "message": DB_UNAVAILABLE_DETAIL},
            )
            return
        if generation is None:  # the business (and its requests) was deleted
            yield ServerSentEvent(
                event="error", data={"code": "not_found", "message": "The request is gone."}
            )
            return
        state = (generation.status, generation.stage, generation.attempts)
        if state != seen:
            seen, pause = state, POLL_FIRST_SECONDS
            yield ServerSentEvent(
                event="progress",
                data={"status": state[0], "stage": state[1], "attempt": state[2]},
            )
        if generation.status == GenerationStatus.FAILED:
            yield ServerSentEvent(
                event="error",
                data={"code": "generation_failed", "message": generation.error or "failed"},
            )
            return
        if generation.status in (GenerationStatus.SUCCEEDED, GenerationStatus.SKIPPED):
            for view in views:
                yield ServerSentEvent(event="milestone", data=_public(view).model_dump(mode="json"))
            yield ServerSentEvent(
                event="done",
                data={
                    "generation_id": str(generation_id),
                    "status": generation.status,
                    "milestones_created": len(views),
                },
            )
            return
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, POLL_MAX_SECONDS)
    yield ServerSentEvent(
        event="error",
        data={
            "code": "generation_pending",
            "message": "The roadmap is still being prepared; check GET /milestones/generation "
            "later.",
        },
    )


@router.get("/{milestone_id}", response_model=MilestonePublic)
async def get_milestone(
    milestone_id: uuid.UUID, business: CurrentBusiness, milestones: MilestoneServiceDep
) -> MilestonePublic:
    return _public(await milestones.get(business, milestone_id))


@router.patch("/{milestone_id}", response_model=MilestonePublic)
async def update_milestone(
    milestone_id: uuid.UUID,
    data: MilestoneUpdate,
    business: CurrentBusiness,
    milestones: MilestoneServiceDep,
) -> MilestonePublic:
    """Change the title, description or order (rewards and tasks stay as created)."""
    return _public(await milestones.update(business, milestone_id, data))


@router.delete("/{milestone_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_milestone(
    milestone_id: uuid.UUID, business: CurrentBusiness, milestones: MilestoneServiceDep
) -> Response:
    """Remove the milestone from my roadmap; points it earned stay."""
    await milestones.delete(business, milestone_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{milestone_id}/start",
    response_model=MilestonePublic,
    responses={409: {"description": "Already completed"}},
)
async def start_milestone(
    milestone_id: uuid.UUID, business: CurrentBusiness, milestones: MilestoneServiceDep
) -> MilestonePublic:
    return _public(await milestones.start(business, milestone_id))


@router.post("/{milestone_id}/tasks/{task_id}/complete", response_model=TaskOutcome)
async def complete_task(
    milestone_id: uuid.UUID,
    task_id: uuid.UUID,
    business: CurrentBusiness,
    milestones: MilestoneServiceDep,
) -> TaskOutcome:
    """Tick a task: earns its points once; the last task completes the milestone and
    earns its bonus. Sending it again changes nothing (`changed: false`)."""
    return _outcome(await milestones.set_task_done(business, milestone_id, task_id, True))


@router.post("/{milestone_id}/tasks/{task_id}/uncomplete", response_model=TaskOutcome)
async def uncomplete_task(
    milestone_id: uuid.UUID,
    task_id: uuid.UUID,
    business: CurrentBusiness,
    milestones: MilestoneServiceDep,
) -> TaskOutcome:
    """Untick a task: its points (and a completed milestone's bonus) are taken back."""
    return _outcome(await milestones.set_task_done(business, milestone_id, task_id, False))
