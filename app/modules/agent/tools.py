"""The advisor's tool list, assembled in one place.

`DOMAIN_TOOLS` is the one registry of the service's own tools (the MCP server serves the
same specs). `assemble_tools` is the only function that decides which tools a turn gets:
the domain tools bound to the chatting user (so whatever ids the LLM passes, a tool can
only touch that user's data), followed by the tools of the external MCP servers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from llama_index.core.tools import AsyncBaseTool

from app.modules.agent.toolkit import ToolContext, ToolSpec, function_tool
from app.modules.business.tools import TOOLS as BUSINESS_TOOLS
from app.modules.finance.tools import TOOLS as FINANCE_TOOLS
from app.modules.milestone.tools import TOOLS as MILESTONE_TOOLS
from app.modules.users.tools import TOOLS as USER_TOOLS

DOMAIN_TOOLS: tuple[ToolSpec, ...] = (
    *USER_TOOLS,
    *BUSINESS_TOOLS,
    *FINANCE_TOOLS,
    *MILESTONE_TOOLS,
)


def domain_tools(ctx: ToolContext) -> list[AsyncBaseTool]:
    return [function_tool(spec, ctx) for spec in DOMAIN_TOOLS]


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
