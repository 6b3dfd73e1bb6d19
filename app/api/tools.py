"""The service's own tools, assembled in one place, and the one way to bind them.

`DOMAIN_TOOLS` is the registry: every domain's `tools.py` contributes its specs, and the
advisor's chat turns and the MCP server both serve exactly these. `tool_context` builds
the `ToolContext` both bind them to (one user, their account checked before every call);
`domain_tools` adapts the specs for the agent, followed by the external MCP servers'
tools (`external_tools`) under names that do not collide with ours.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from llama_index.core.tools import AsyncBaseTool
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.background import Worker
from app.core.config import Settings
from app.core.security import PasswordHasher
from app.core.tools import Conversation, ToolContext, ToolSpec, function_tool
from app.modules.business.tools import TOOLS as BUSINESS_TOOLS
from app.modules.finance.tools import TOOLS as FINANCE_TOOLS
from app.modules.milestone.tools import TOOLS as MILESTONE_TOOLS
from app.modules.users.service import UserService
from app.modules.users.tools import TOOLS as USER_TOOLS

DOMAIN_TOOLS: tuple[ToolSpec, ...] = (
    *USER_TOOLS,
    *BUSINESS_TOOLS,
    *FINANCE_TOOLS,
    *MILESTONE_TOOLS,
)
DOMAIN_TOOL_NAMES = frozenset(spec.name for spec in DOMAIN_TOOLS)


def tool_context(
    user_id: uuid.UUID,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    hasher: PasswordHasher,
    settings: Settings,
    roadmap_worker: Worker | None,
    conversation: Conversation | None = None,
    token_issued_at: datetime | None = None,
) -> ToolContext:
    """The context of one caller's tools. `token_issued_at`: when the access token that
    authorised the caller was issued, so that a session-ending event after it (password
    change, deactivation) stops the tools as it stops the token; None where every call is
    authenticated afresh anyway (the MCP server's requests)."""

    async def may_act() -> bool:
        async with sessionmaker() as session:
            return await UserService(session, hasher).may_act(user_id, token_issued_at)

    return ToolContext(
        user_id=user_id,
        sessionmaker=sessionmaker,
        hasher=hasher,
        settings=settings,
        roadmap_worker=roadmap_worker,
        conversation=conversation,
        may_act=may_act,
    )


def domain_tools(ctx: ToolContext) -> list[AsyncBaseTool]:
    return [function_tool(spec, ctx) for spec in DOMAIN_TOOLS]


class ExternalTools(Protocol):
    """What the MCP client manager offers the agent."""

    def tools(self, reserved: Iterable[str] = ()) -> list[AsyncBaseTool]: ...


def external_tools(external: ExternalTools | None) -> list[AsyncBaseTool]:
    """The MCP servers' tools, renamed by the manager where a domain tool has the name,
    so every name the LLM sees is unique. A turn's list is the domain tools, then these."""
    return [] if external is None else external.tools(reserved=DOMAIN_TOOL_NAMES)
