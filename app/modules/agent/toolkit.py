"""What every domain tool is made of: its context, its spec, and the llama_index adapter.

A tool is declared once as a `ToolSpec` (name, description, a pydantic model of its
parameters, and an async `run(ctx, params)` that calls the domain's service) and adapted
to each consumer: the advisor's agent here, the MCP server elsewhere. The `ToolContext`
is bound to one authenticated user, so whatever ids the model passes, a tool reaches
only that user's business.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llama_index.core.tools import FunctionTool, ToolOutput
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.errors import DomainError, validation_problems
from app.core.security import PasswordHasher
from app.modules.business.models import BusinessProfile
from app.modules.business.service import BusinessService
from app.modules.milestone.service import RoadmapScheduler

NO_BUSINESS = (
    "The owner has no business profile yet. Ask them to create it in the Telaten app "
    "first (name, category, stage)."
)


class ToolError(Exception):
    """A refusal the model should read and act on (shown to it as an error result)."""


@dataclass(frozen=True)
class Conversation:
    """The chat a tool is called from: its session and when the owner's current message
    was written (what came before it is what the owner has already seen)."""

    session_id: uuid.UUID
    current_message_at: datetime


@dataclass(frozen=True)
class ToolContext:
    """What a tool may use: the chatting user's id and a way to open short DB sessions."""

    user_id: uuid.UUID
    sessionmaker: async_sessionmaker[AsyncSession]
    hasher: PasswordHasher
    settings: Settings
    scheduler: RoadmapScheduler | None
    # The chat the tools serve; None only for callers without one (rules that need the
    # conversation, like the delete confirmation, then rely on the client's own).
    conversation: Conversation | None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    async def business(self, session: AsyncSession) -> BusinessProfile:
        business = await BusinessService(session).mine(self.user_id)
        if business is None:
            raise ToolError(NO_BUSINESS)
        return business


Run = Callable[[ToolContext, Any], Awaitable[Any]]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    params: type[BaseModel]
    run: Run
    read_only: bool = False
    destructive: bool = False


class NoParams(BaseModel):
    pass


def tool_result_text(result: Any) -> str:
    return (
        result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
    )


async def run_spec(spec: ToolSpec, ctx: ToolContext, arguments: dict[str, Any]) -> tuple[str, bool]:
    """(output text, is_error): a refusal or a rule the service enforces is an error
    result the model can read, never a crash."""
    try:
        params = spec.params.model_validate(arguments)
    except ValidationError as exc:
        problems = validation_problems(exc)
        return f"Error: invalid arguments for '{spec.name}': {problems}", True
    try:
        return tool_result_text(await spec.run(ctx, params)), False
    except ToolError as exc:
        return f"Error: {exc}", True
    except DomainError as exc:
        return f"Error: {exc.detail}", True


def function_tool(spec: ToolSpec, ctx: ToolContext) -> FunctionTool:
    """The spec as a llama_index tool bound to `ctx`, with the spec's real schema."""

    async def call(**arguments: Any) -> tuple[str, bool]:
        return await run_spec(spec, ctx, arguments)

    async def to_output(result: tuple[str, bool]) -> ToolOutput:
        text, is_error = result
        return ToolOutput(
            content=text, tool_name=spec.name, raw_input={}, raw_output=text, is_error=is_error
        )

    return FunctionTool.from_defaults(
        async_fn=call,
        name=spec.name,
        description=spec.description,
        fn_schema=spec.params,
        async_callback=to_output,
    )
