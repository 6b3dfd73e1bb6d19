"""The advisor's roadmap tools: the same service calls as `/milestones`.

Two rules of the advisor live here because they are about the conversation: it adds
milestones only while none are active, unless it replaces one the owner asked to swap
(`MilestoneService.create(exclusive=True)`); and it deletes only after the owner saw a
preview and answered — a `delete_milestone` call without `confirm` in the turn just
before the owner's current message is the preview.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.core.tools import ToolContext, ToolError, ToolSpec
from app.modules.business.service import callers_business
from app.modules.chat.service import ChatService
from app.modules.milestone.models import ACTIVE_STATUSES
from app.modules.milestone.plans import MilestoneView
from app.modules.milestone.schemas import (
    MAX_TASKS,
    Difficulty,
    MilestoneCreate,
    MilestoneDescription,
    MilestoneTitle,
    MilestoneUpdate,
    TaskTitle,
)
from app.modules.milestone.service import MilestoneService, TaskResult

LIST_LIMIT = 30


def _service(ctx: ToolContext, session: Any) -> MilestoneService:
    return MilestoneService.for_settings(session, ctx.settings, ctx.roadmap_worker)


def _brief(view: MilestoneView, description_chars: int = 2000) -> dict[str, Any]:
    m = view.milestone
    return {
        "id": str(m.id),
        "title": m.title,
        "description": m.description[:description_chars],
        "status": m.status,
        "order": m.position,
        "difficulty": m.difficulty,
        "bonus_points": m.reward_points,
        "tasks": [
            {"id": str(t.id), "title": t.title, "done": t.done, "points": t.reward_points}
            for t in view.tasks
        ],
    }


class ListParams(BaseModel):
    status: Literal["active", "pending", "in_progress", "completed", "all"] = Field(
        default="active", description="active = pending or in progress"
    )


async def list_milestones(ctx: ToolContext, p: ListParams) -> dict[str, Any]:
    statuses = {
        "active": list(ACTIVE_STATUSES),
        "all": None,
    }.get(p.status, [p.status])
    async with ctx.session() as session:
        business = await callers_business(session, ctx.user_id)
        views, total = await _service(ctx, session).list(business, statuses, LIST_LIMIT, 0)
    # Short descriptions: a long list must stay readable within the tool-output limit.
    return {"total": total, "milestones": [_brief(v, 200) for v in views]}


class CreateParams(BaseModel):
    title: MilestoneTitle
    description: MilestoneDescription = ""
    difficulty: Difficulty = 2
    tasks: list[TaskTitle] = Field(
        min_length=1, max_length=MAX_TASKS, description="Small, checkable steps, in order"
    )
    replaces_milestone_id: uuid.UUID | None = Field(
        default=None,
        description="Only when the owner asked to swap a not-yet-started milestone for this one",
    )


async def create_milestone(ctx: ToolContext, p: CreateParams) -> dict[str, Any]:
    data = MilestoneCreate(
        title=p.title, description=p.description, difficulty=p.difficulty, tasks=p.tasks
    )
    async with ctx.session() as session:
        business = await callers_business(session, ctx.user_id)
        view = await _service(ctx, session).create(
            business, data, replaces=p.replaces_milestone_id, exclusive=True
        )
    return {"created": _brief(view), "replaced": p.replaces_milestone_id}


class MilestoneRef(BaseModel):
    milestone_id: uuid.UUID


async def start_milestone(ctx: ToolContext, p: MilestoneRef) -> dict[str, Any]:
    async with ctx.session() as session:
        business = await callers_business(session, ctx.user_id)
        return {"started": _brief(await _service(ctx, session).start(business, p.milestone_id))}


class UpdateParams(BaseModel):
    milestone_id: uuid.UUID
    title: MilestoneTitle | None = None
    description: MilestoneDescription | None = None


async def update_milestone(ctx: ToolContext, p: UpdateParams) -> dict[str, Any]:
    data = MilestoneUpdate(title=p.title, description=p.description)
    async with ctx.session() as session:
        business = await callers_business(session, ctx.user_id)
        view = await _service(ctx, session).update(business, p.milestone_id, data)
    return {"updated": _brief(view)}


class DeleteParams(BaseModel):
    milestone_id: uuid.UUID
    confirm: bool = Field(
        default=False,
        description=(
            "Leave false first: that shows what would be deleted; ask the owner. Only after "
            "they explicitly agree in their next message, call again with true."
        ),
    )


async def delete_milestone(ctx: ToolContext, p: DeleteParams) -> dict[str, Any]:
    async with ctx.session() as session:
        business = await callers_business(session, ctx.user_id)
        service = _service(ctx, session)
        view = await service.get(business, p.milestone_id)
        if not p.confirm:
            return {
                "preview": _brief(view),
                "next_step": "Ask the owner to confirm deleting this milestone. Delete it only "
                "after they agree, by calling delete_milestone again with confirm=true.",
            }
        if not await _previewed(ctx, session, p.milestone_id):
            raise ToolError(
                "Deleting needs the owner's explicit confirmation: call delete_milestone "
                "with confirm=false to show them the milestone, and ask them first."
            )
        await service.delete(business, p.milestone_id)
    return {"deleted": {"id": str(p.milestone_id), "title": view.milestone.title}}


async def _previewed(ctx: ToolContext, session: Any, milestone_id: uuid.UUID) -> bool:
    """Was this milestone's deletion previewed in the turn just before the owner's
    current message, i.e. has the owner answered the preview? Without a chat (an MCP
    client, which asks its user itself before a destructive tool), confirm suffices."""
    if ctx.conversation is None:
        return True
    calls = await ChatService(session).previous_turn_tool_calls(
        ctx.conversation.session_id, "delete_milestone", ctx.conversation.current_message_at
    )
    return any(
        str(call.get("arguments", {}).get("milestone_id")) == str(milestone_id)
        and not call.get("arguments", {}).get("confirm")
        and not call.get("is_error")
        for call in calls
    )


class TaskRef(BaseModel):
    milestone_id: uuid.UUID
    task_id: uuid.UUID


async def complete_task(ctx: ToolContext, p: TaskRef) -> dict[str, Any]:
    async with ctx.session() as session:
        business = await callers_business(session, ctx.user_id)
        result: TaskResult = await _service(ctx, session).set_task_done(
            business, p.milestone_id, p.task_id, True
        )
    return {
        "milestone": _brief(result.view),
        "already_done": not result.changed,
        "points_awarded": result.points,
        "milestone_completed": result.milestone_completed,
        "bonus_awarded": result.bonus,
        "next_roadmap_requested": result.next_roadmap_requested,
    }


TOOLS = [
    ToolSpec(
        "list_milestones",
        "List the owner's roadmap milestones with their tasks (ids, status, points).",
        ListParams,
        list_milestones,
        read_only=True,
    ),
    ToolSpec(
        "create_milestone",
        "Add a milestone with 1-10 tasks to the owner's roadmap. Refused while active "
        "milestones exist, unless replaces_milestone_id names one the owner asked to swap.",
        CreateParams,
        create_milestone,
    ),
    ToolSpec(
        "start_milestone",
        "Mark a milestone as in progress.",
        MilestoneRef,
        start_milestone,
    ),
    ToolSpec(
        "update_milestone",
        "Change a milestone's title or description.",
        UpdateParams,
        update_milestone,
    ),
    ToolSpec(
        "delete_milestone",
        "Delete a milestone from the roadmap. Two steps: preview (confirm=false), ask the "
        "owner, and only after their explicit yes call again with confirm=true.",
        DeleteParams,
        delete_milestone,
        destructive=True,
    ),
    ToolSpec(
        "complete_task",
        "Mark a task of a milestone as done (earns its points; the last task completes "
        "the milestone and earns its bonus). Doing it twice changes nothing.",
        TaskRef,
        complete_task,
    ),
]
