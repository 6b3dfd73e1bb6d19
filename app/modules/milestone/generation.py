"""Drafting a roadmap with the LLM: context in, validated milestones out.

The model answers by calling one tool, `save_roadmap`, whose parameters are
`roadmap_schema(size)`: exactly `size` milestones of 3-5 tasks (structured output through
tool calling; nothing is scraped from free text). The arguments are validated against
that schema, and a rejected answer is sent back to the model with the reasons, up to the
attempt limit. Nothing reaches the database from here: the worker saves what this returns.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from llama_index.core.base.llms.types import ChatResponse
from llama_index.core.llms import ChatMessage
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel, Field, ValidationError, create_model
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import validation_problems
from app.core.types import MultiLine, SingleLine
from app.modules.agent.prompt import describe_business, today_in_jakarta
from app.modules.agent.runner import AgentError, stream_llm, tool_calls
from app.modules.business.service import BusinessService
from app.modules.chat.service import ChatService
from app.modules.finance.reports import FinanceReports
from app.modules.milestone.models import GenerationKind
from app.modules.milestone.plans import MilestonePlan
from app.modules.milestone.repository import MilestoneRepository

FIRST_ROADMAP_SIZE = 4
NEXT_ROADMAP_SIZE = 3
MIN_TASKS, MAX_TASKS = 3, 5
TOOL_NAME = "save_roadmap"
RECENT_CHAT_MESSAGES = 12
RECENT_COMPLETED = 8
RETRY_PAUSE_SECONDS = 0.5


class MilestoneDraft(BaseModel):
    title: Annotated[str, SingleLine(200)] = Field(
        description="Short, concrete goal (max 200 characters)"
    )
    description: Annotated[str, MultiLine(2000)] = Field(
        default="", description="Why it matters for this business and how to do it"
    )
    difficulty: Annotated[int, Field(ge=1, le=5, description="1 (easy) .. 5 (hard)")]
    tasks: list[Annotated[str, SingleLine(300)]] = Field(
        min_length=MIN_TASKS,
        max_length=MAX_TASKS,
        description=f"{MIN_TASKS}-{MAX_TASKS} small, checkable steps, in order",
    )


def roadmap_schema(size: int) -> type[BaseModel]:
    """The `save_roadmap` parameters: exactly `size` milestones (the count is in the
    schema, so the model is told it, not only checked against it)."""
    return create_model(
        "RoadmapDraft",
        __doc__="The roadmap: milestones in the order the owner should do them.",
        milestones=(
            Annotated[list[MilestoneDraft], Field(min_length=size, max_length=size)],
            ...,
        ),
    )


@dataclass(frozen=True)
class RoadmapContext:
    business_id: uuid.UUID
    size: int
    text: str  # what the model is told about the business


class GenerationFailed(Exception):
    """No valid roadmap within the attempts; the message is for the owner."""


SYSTEM_PROMPT = """\
Kamu adalah perencana bisnis di aplikasi Telaten untuk UMKM Indonesia. Susun peta jalan
(roadmap) yang singkat dan konkret untuk usaha di bawah ini: {size} milestone berurutan,
masing-masing dengan {min_tasks}-{max_tasks} tugas kecil yang bisa dicentang dan dikerjakan
dalam beberapa hari. Sesuaikan dengan tahap usaha, keuangannya, dan apa yang sudah selesai;
milestone baru harus melanjutkan yang sudah dicapai, bukan mengulanginya. Tulis dalam
Bahasa Indonesia. Tingkat kesulitan 1 (mudah) sampai 5 (sulit).
Jawab HANYA dengan memanggil alat `{tool}` sekali, berisi tepat {size} milestone."""


def roadmap_size(kind: str, completed_before: int) -> int:
    """A first roadmap has four milestones; one that follows earlier work, three."""
    if kind == GenerationKind.INITIAL or completed_before == 0:
        return FIRST_ROADMAP_SIZE
    return NEXT_ROADMAP_SIZE


async def gather_context(
    session: AsyncSession, business_id: uuid.UUID, kind: str, focus: str
) -> RoadmapContext | None:
    """The business profile and memory, this month's money, recent chat and the roadmap
    so far (None if the business no longer exists)."""
    business = await BusinessService(session).get(business_id)
    if business is None:
        return None
    milestones = MilestoneRepository(session)
    done = await milestones.completed(business_id, RECENT_COMPLETED)
    tasks = await milestones.tasks_of([m.id for m in done])
    money = await FinanceReports(session).summary(business, "month", None, None, None)
    chat = await ChatService(session).recent_messages(business.user_id, RECENT_CHAT_MESSAGES)

    parts = [f"Hari ini: {today_in_jakarta()}.", describe_business(business) or ""]
    top = ", ".join(
        f"{c.category_name} ({c.type}) Rp{c.total:,}".replace(",", ".")
        for c in money.by_category[:5]
    )
    parts.append(
        f"Keuangan bulan ini ({money.start} s.d. {money.end}): pemasukan "
        f"Rp{money.income:,}, pengeluaran Rp{money.expense:,}, bersih Rp{money.net:,}, "
        f"{money.count} transaksi.".replace(",", ".")
        + (f" Kategori terbesar: {top}." if top else "")
    )
    if done:
        lines = []
        for m in reversed(done):
            steps = "; ".join(t.title for t in tasks[m.id])
            lines.append(f"- {m.title} (selesai {m.completed_at:%Y-%m-%d}): {steps}")
        parts.append("Milestone yang sudah selesai:\n" + "\n".join(lines))
    else:
        parts.append("Belum ada milestone yang selesai: ini roadmap pertama.")
    if chat:
        lines = [f"{m.role}: {m.content[:300]}" for m in chat]
        parts.append("Percakapan terakhir dengan penasihat:\n" + "\n".join(lines))
    if focus:
        parts.append(f"Permintaan pemilik untuk roadmap ini: {focus}")
    return RoadmapContext(
        business_id=business_id,
        size=roadmap_size(kind, len(done)),
        text="\n\n".join(p for p in parts if p),
    )


def _roadmap_tool(size: int) -> FunctionTool:
    def save_roadmap(**_: Any) -> str:  # never run: only its schema is offered
        return "saved"

    return FunctionTool.from_defaults(
        fn=save_roadmap,
        name=TOOL_NAME,
        description="Save the roadmap: the milestones in order, each with its tasks.",
        fn_schema=roadmap_schema(size),
    )


async def _ask(
    llm: FunctionCallingLLM, tool: FunctionTool, conversation: list[ChatMessage], idle: float
) -> ChatResponse:
    response = None
    async for item in stream_llm(llm, [tool], conversation, idle, tool_required=True):
        if isinstance(item, ChatResponse):
            response = item
    if response is None:
        raise AgentError("llm_empty_response", "The AI model returned nothing.")
    return response


def validate_draft(arguments: dict[str, Any], size: int) -> list[MilestonePlan]:
    """The tool call's arguments as plans, or ValueError saying what is wrong."""
    try:
        draft: Any = roadmap_schema(size).model_validate(arguments)
    except ValidationError as exc:
        raise ValueError(validation_problems(exc, limit=10)) from None
    return [MilestonePlan(m.title, m.description, m.difficulty, m.tasks) for m in draft.milestones]


async def draft_roadmap(
    llm: FunctionCallingLLM,
    context: RoadmapContext,
    *,
    attempts: int,
    attempt_timeout: float,
    on_attempt: Callable[[int], Awaitable[None]],
) -> list[MilestonePlan]:
    """Ask the model until it gives a valid roadmap; each rejection is explained to it.

    `on_attempt(n)` runs before each call (the worker renews its lease there, and
    raises if it lost the request). Raises `GenerationFailed` after `attempts` tries.
    """
    tool = _roadmap_tool(context.size)
    conversation = [
        ChatMessage(
            role="system",
            content=SYSTEM_PROMPT.format(
                size=context.size, min_tasks=MIN_TASKS, max_tasks=MAX_TASKS, tool=TOOL_NAME
            ),
        ),
        ChatMessage(role="user", content=context.text),
    ]
    problem = "no answer"
    for attempt in range(1, attempts + 1):
        await on_attempt(attempt)
        try:
            async with asyncio.timeout(attempt_timeout):
                response = await _ask(llm, tool, conversation, attempt_timeout)
            calls = [c for c in tool_calls(response) if c.name == TOOL_NAME]
        except (AgentError, TimeoutError) as exc:
            # Tried again after a pause; the conversation is unchanged.
            problem = exc.message if isinstance(exc, AgentError) else "the AI model timed out"
            await asyncio.sleep(RETRY_PAUSE_SECONDS * attempt)
            continue
        conversation.append(response.message)
        if not calls:
            problem = "the model answered without calling save_roadmap"
            conversation.append(
                ChatMessage(role="user", content=f"Jawab dengan memanggil alat `{TOOL_NAME}`.")
            )
            continue
        try:
            return validate_draft(calls[0].arguments, context.size)
        except ValueError as exc:
            problem = f"the roadmap was not valid ({exc})"
            conversation.append(
                ChatMessage(
                    role="tool",
                    content=f"Error: {exc}. Call {TOOL_NAME} again with a corrected roadmap.",
                    additional_kwargs={"tool_call_id": calls[0].id, "name": TOOL_NAME},
                )
            )
    raise GenerationFailed(f"No usable roadmap after {attempts} attempt(s): {problem}"[:1000])
