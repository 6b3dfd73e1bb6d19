"""The advisor's tool list, assembled in one place.

`DOMAIN_TOOLS` is the one registry of the service's own tools. A chat turn gets them
bound to the chatting user (`domain_tools`: whatever ids the LLM passes, a tool can only
touch that user's data), followed by the tools of the external MCP servers
(`external_tools`).
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


DOMAIN_TOOL_NAMES = frozenset(spec.name for spec in DOMAIN_TOOLS)


def external_tools(external: ExternalTools | None) -> list[AsyncBaseTool]:
    """The MCP servers' tools, renamed by the manager where a domain tool has the name,
    so every name the LLM sees is unique. A turn's list is the domain tools, then these."""
    return [] if external is None else external.tools(reserved=DOMAIN_TOOL_NAMES)
