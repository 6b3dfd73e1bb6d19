"""A real MCP server for the tests, on the `mcp` SDK's `MCPServer`.

    python -m tests.mcp_servers.toolbox stdio [--name N] [--page-size K]
    python -m tests.mcp_servers.toolbox streamable-http --port P
    python -m tests.mcp_servers.toolbox sse --port P

Tools with varied schemas, one that fails (isError), a slow one, one that returns an
image, and `whoami` (its pid and an environment variable) for lifecycle tests; with
--odd-names also `odd_names`, whose parameters are named `self`, `class`, `file-path`...
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
from typing import Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.types import Image
from mcp_types import (
    CallToolResult,
    InputRequiredResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
)
from mcp_types import Tool as MCPTool
from pydantic import BaseModel, Field

# A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class PriceRange(BaseModel):
    """Bounds in rupiah."""

    min: int = Field(ge=0, description="lowest price")
    max: int | None = Field(default=None, description="highest price")


# `odd_names` (with --odd-names): property names no Python parameter can have, or that
# clash with one: `self`, a keyword, a dash, and `self` again inside an object.
ODD_NAMES_TOOL = "odd_names"
ODD_NAMES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "self": {"type": "string", "description": "who"},
        "class": {"type": "string"},
        "file-path": {"type": "string"},
        "kwargs": {"type": "integer"},
        "options": {
            "type": "object",
            "properties": {"self": {"type": "boolean"}, "from": {"type": "string"}},
            "required": ["self"],
        },
    },
    "required": ["self", "class", "file-path"],
    "additionalProperties": False,
}


class PagedServer(MCPServer):
    """Lists its tools `page_size` at a time, to exercise the client's pagination."""

    page_size: int = 0
    odd_names: bool = False

    async def list_tools(self) -> list[MCPTool]:
        tools = await super().list_tools()
        if self.odd_names:
            tools.append(
                MCPTool(
                    name=ODD_NAMES_TOOL,
                    description="Echo the arguments exactly as received, as sorted JSON.",
                    input_schema=ODD_NAMES_SCHEMA,
                )
            )
        return tools

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        if self.odd_names and name == ODD_NAMES_TOOL:
            return ODD_NAMES_SCHEMA
        return super()._tool_input_schema(name)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Any = None
    ) -> CallToolResult | InputRequiredResult:
        if self.odd_names and name == ODD_NAMES_TOOL:
            text = json.dumps(arguments, sort_keys=True, ensure_ascii=False)
            return CallToolResult(content=[TextContent(type="text", text=text)])
        return await super().call_tool(name, arguments, context)

    async def _handle_list_tools(
        self, ctx: Any, params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        tools = await self.list_tools()
        if not self.page_size:
            return ListToolsResult(tools=tools)
        start = int(params.cursor) if params and params.cursor else 0
        end = start + self.page_size
        return ListToolsResult(
            tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None
        )


def build(name: str) -> PagedServer:
    server = PagedServer(name)

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def search_products(
        query: str = Field(description="words to look for"),
        category: Literal["food", "drink", "craft"] = "food",
        tags: list[str] | None = None,
        price: PriceRange | None = None,
    ) -> str:
        """Search the catalogue."""
        bounds = f"{price.min}-{price.max}" if price else "any"
        return f"query={query} category={category} tags={','.join(tags or [])} price={bounds}"

    @server.tool()
    def fail_always(reason: str) -> str:
        """Always fails."""
        raise ValueError(f"refused: {reason}")

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleeps, then answers."""
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    @server.tool()
    def picture() -> Image:
        """A tiny image."""
        return Image(data=PNG, format="png")

    @server.tool()
    def whoami() -> dict[str, Any]:
        """This process: pid, server name, and TOOLBOX_GREETING."""
        return {"pid": os.getpid(), "server": name, "greeting": os.environ.get("TOOLBOX_GREETING")}

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back, tagged with the server name."""
        return f"{name}: {text}"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["stdio", "streamable-http", "sse"])
    parser.add_argument("--name", default="toolbox")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--page-size", type=int, default=0)
    parser.add_argument("--odd-names", action="store_true", help="also offer odd_names")
    args = parser.parse_args()
    server = build(args.name)
    server.page_size = args.page_size
    server.odd_names = args.odd_names
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run(args.transport, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
