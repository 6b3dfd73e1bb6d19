"""What every domain tool is made of: its context, its spec, and the door it is run through.

A tool is declared once, in its domain's `tools.py`, as a `ToolSpec` (name, description,
a pydantic model of its parameters, and an async `run(ctx, params)` that calls the
domain's service) and adapted to each consumer: the advisor's agent (`function_tool`)
and the MCP server. The `ToolContext` is bound to one authenticated user, so whatever
ids the model passes, a tool reaches only that user's business.

`run_spec` is the one door for both: it checks at every call that the account may still
act (a chat turn outlives its authentication by minutes), and turns an unexpected failure
into a fixed message with the request id, the details going to the log only.

This module knows no domain: what a context needs from one (the account check, the
roadmap worker) is handed to it by `app.api.tools.tool_context`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from llama_index.core.tools import FunctionTool, ToolOutput
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.background import Worker
from app.core.config import Settings
from app.core.errors import DomainError, validation_problems
from app.core.security import PasswordHasher

log = structlog.stdlib.get_logger(__name__)

ACCOUNT_REVOKED = (
    "Error: this account was deactivated or signed out after this conversation began, so "
    "the tool was not run. Do not call more tools; tell the owner to sign in again."
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
    """What a tool may use: the calling user's id and a way to open short DB sessions."""

    user_id: uuid.UUID
    sessionmaker: async_sessionmaker[AsyncSession]
    hasher: PasswordHasher
    settings: Settings
    roadmap_worker: Worker | None
    # The chat the tools serve; None only for callers without one (rules that need the
    # conversation, like the delete confirmation, then rely on the client's own).
    conversation: Conversation | None
    # Whether the account may still act: active, and its sessions not ended since the
    # token that authorised the caller was issued. Asked before every call.
    may_act: Callable[[], Awaitable[bool]]

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session


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
    result the model can read, never a crash; an unexpected failure (a database error, a
    bug) is a fixed message naming the request id, with the details in the log only."""
    try:
        params = spec.params.model_validate(arguments)
    except ValidationError as exc:
        problems = validation_problems(exc)
        return f"Error: invalid arguments for '{spec.name}': {problems}", True
    try:
        if not await ctx.may_act():
            log.warning("tool_refused_revoked_account", tool=spec.name)
            return ACCOUNT_REVOKED, True
        return tool_result_text(await spec.run(ctx, params)), False
    except ToolError as exc:
        return f"Error: {exc}", True
    except DomainError as exc:
        return f"Error: {exc.detail}", True
    except Exception:
        log.exception("tool_crashed", tool=spec.name)
        return tool_failure_text(), True


def tool_failure_text() -> str:
    """What a caller (the model, an MCP client) learns of an unexpected failure: that it
    happened, and the request id to find it in the log. Never the exception: its text can
    carry SQL, table names or values."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    ref = f" (request id {request_id})" if request_id else ""
    return (
        f"Error: the tool failed on our side{ref}; it may not have been done. Tell the "
        "owner it did not work this time and to try again later."
    )


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
