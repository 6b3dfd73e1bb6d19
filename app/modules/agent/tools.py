"""The advisor's tool list, assembled in one place.

`assemble_tools` is the only function that decides which tools a turn gets: the
service's own domain tools (built per turn, bound to the chatting user, so whatever ids
the LLM passes a tool can only touch that user's data) followed by the tools of the
external MCP servers. Later domains add their tools to `domain_tools`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from llama_index.core.tools import AsyncBaseTool, FunctionTool
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.security import PasswordHasher
from app.modules.users.service import UserService


@dataclass(frozen=True)
class ToolContext:
    """What a tool may use: the chatting user's id and a way to open short DB sessions."""

    user_id: uuid.UUID
    sessionmaker: async_sessionmaker[AsyncSession]
    hasher: PasswordHasher


def domain_tools(ctx: ToolContext) -> list[AsyncBaseTool]:
    async def get_my_account() -> dict[str, Any]:
        """Get the owner's own account: name, email, role and when they joined Telaten."""
        async with ctx.sessionmaker() as session:
            user = await UserService(session, ctx.hasher).get(ctx.user_id)
            if user is None:
                raise LookupError("account not found")
            return {
                "name": user.name,
                "email": user.email,
                "role": user.role,
                "member_since": user.created_at.date().isoformat(),
            }

    return [FunctionTool.from_defaults(async_fn=get_my_account, name="get_my_account")]


class ExternalTools(Protocol):
    """What the MCP client manager offers the agent."""

    def tools(self, reserved: Iterable[str] = ()) -> list[AsyncBaseTool]: ...


def assemble_tools(ctx: ToolContext, external: ExternalTools | None = None) -> list[AsyncBaseTool]:
    """Domain tools first; external (MCP) tools after them, renamed by the manager where
    a name is already taken, so every name the LLM sees is unique."""
    own = domain_tools(ctx)
    if external is None:
        return own
    return [*own, *external.tools(reserved={t.metadata.name for t in own})]
