"""The advisor's tool list, assembled in one place.

`assemble_tools` is the only function that decides which tools a turn gets: the
service's own domain tools (built per turn, bound to the chatting user, so whatever ids
the LLM passes a tool can only touch that user's data) followed by the tools of the
external MCP servers. Later domains add their tools to `domain_tools`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

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


def external_tools(mcp_manager: Any | None) -> list[AsyncBaseTool]:
    """Tools of the connected MCP servers (none until the MCP client is configured)."""
    if mcp_manager is None:
        return []
    return list(mcp_manager.tools())


def assemble_tools(ctx: ToolContext, mcp_manager: Any | None = None) -> list[AsyncBaseTool]:
    tools = [*domain_tools(ctx), *external_tools(mcp_manager)]
    seen: set[str] = set()
    unique = []
    for tool in tools:  # a name the LLM sees twice would be ambiguous: first one wins
        if tool.metadata.name not in seen:
            seen.add(tool.metadata.name)
            unique.append(tool)
    return unique
