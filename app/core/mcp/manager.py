"""The MCP client manager: every configured server, and their tools as llama_index tools.

manager = MCPManager.from_settings(settings)
await manager.start()        # all servers at once, each within its own timeout
tools = manager.tools()      # FunctionTools with the servers' real schemas
await manager.reload()       # re-read mcp.json: start, stop, restart what changed
await manager.stop()         # close every session, end every child process
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mcp_types as types
import structlog
from llama_index.core.tools import AsyncBaseTool, FunctionTool, ToolOutput

from app.core.config import Settings
from app.core.mcp.config import McpConfig, ServerConfig, Timeouts, load_mcp_config
from app.core.mcp.connection import ServerConnection, ToolCallResult
from app.core.mcp.schema import model_from_schema

log = structlog.stdlib.get_logger(__name__)

MAX_TOOL_NAME = 64  # what OpenAI-compatible providers accept: ^[a-zA-Z0-9_-]{1,64}$
MAX_DESCRIPTION = 1024
STOP_GRACE_SECONDS = 10.0
_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def sanitize_tool_name(name: str) -> str:
    cleaned = _INVALID_NAME_CHARS.sub("_", name).strip("_") or "tool"
    if len(cleaned) <= MAX_TOOL_NAME:
        return cleaned
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]  # noqa: S324 (a name, not security)
    return f"{cleaned[: MAX_TOOL_NAME - 9]}_{digest}"


class MCPManager:
    def __init__(
        self,
        config_path: Path,
        *,
        log_dir: Path,
        ping_interval: float = 30.0,
        max_backoff: float = 60.0,
        environ: Mapping[str, str] | None = None,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        self.config_path = config_path
        self.timeouts = timeouts
        self.log_dir = log_dir
        self.ping_interval = ping_interval
        self.max_backoff = max_backoff
        self.environ = environ
        self.config_errors: list[str] = []
        self._connections: dict[str, ServerConnection] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tool_cache: tuple[tuple[Any, ...], list[AsyncBaseTool]] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> MCPManager:
        return cls(
            settings.MCP_CONFIG_PATH,
            log_dir=settings.DATA_DIR / "logs",
            ping_interval=settings.MCP_PING_INTERVAL_SECONDS,
            max_backoff=settings.MCP_RECONNECT_MAX_SECONDS,
            timeouts=Timeouts(
                call=settings.MCP_CALL_TIMEOUT_SECONDS,
                connect=settings.MCP_CONNECT_TIMEOUT_SECONDS,
            ),
        )

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect every configured server concurrently; return when each is up or has
        used its own timeout (the slow ones keep trying in the background)."""
        async with self._lock:
            configs = self._read_config()
            self._launch(configs)
            await self._wait_first_attempts(self._connections[c.name] for c in configs)

    async def reload(self) -> dict[str, list[str]]:
        """Re-read mcp.json; restart servers whose entry changed. Returns what changed.

        A file that cannot be read at all (half-saved, invalid JSON) changes nothing:
        the running servers stay up and the error is reported."""
        async with self._lock:
            config = self._load()
            if not config.readable:
                return {"added": [], "removed": [], "restarted": []}
            configs = {c.name: c for c in config.servers}
            current = {name: conn.config for name, conn in self._connections.items()}
            removed = [n for n in current if n not in configs]
            changed = [n for n in current if n in configs and configs[n] != current[n]]
            added = [n for n in configs if n not in current]
            await self._stop_servers([*removed, *changed])
            self._launch([configs[n] for n in [*changed, *added]])
            await self._wait_first_attempts(self._connections[n] for n in [*changed, *added])
            self._tool_cache = None
            summary = {"added": added, "removed": removed, "restarted": changed}
            log.info("mcp_reloaded", **summary)
            return summary

    async def stop(self) -> None:
        async with self._lock:
            await self._stop_servers(list(self._connections))

    def _environ(self) -> Mapping[str, str]:
        return self.environ if self.environ is not None else os.environ

    def _load(self) -> McpConfig:
        """Read mcp.json, logging each problem once."""
        config = load_mcp_config(self.config_path, self._environ(), self.timeouts)
        self.config_errors = config.errors
        for error in config.errors:
            log.error("mcp_config_invalid", problem=error)
        return config

    def _read_config(self) -> list[ServerConfig]:
        return self._load().servers

    def _launch(self, configs: Iterable[ServerConfig]) -> None:
        for config in configs:
            conn = ServerConnection(
                config,
                log_dir=self.log_dir,
                ping_interval=self.ping_interval,
                max_backoff=self.max_backoff,
            )
            self._connections[config.name] = conn
            self._tasks[config.name] = asyncio.create_task(conn.run(), name=f"mcp:{config.name}")

    async def _wait_first_attempts(self, conns: Iterable[ServerConnection]) -> None:
        async def first_attempt(conn: ServerConnection) -> None:
            try:
                # The attempt ends at its connect timeout; a little slack on top.
                async with asyncio.timeout(conn.config.connect_timeout + 1):
                    await conn.first_attempt_done.wait()
            except TimeoutError:
                log.warning("mcp_server_slow", server=conn.config.name)

        await asyncio.gather(*(first_attempt(c) for c in conns))

    async def _stop_servers(self, names: list[str]) -> None:
        conns = [self._connections.pop(n) for n in names if n in self._connections]
        tasks = [self._tasks.pop(n) for n in names if n in self._tasks]
        for conn in conns:
            conn.stop()
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
        for task in pending:  # a transport that will not close: cancel its owner
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE_SECONDS)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning("mcp_owner_failed", error=repr(task.exception()))
        self._tool_cache = None

    # --- tools --------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        return [conn.status() for conn in self._connections.values()]

    def tools(self, reserved: Iterable[str] = ()) -> list[AsyncBaseTool]:
        """Every server's tools (including those of servers that are down right now: they
        answer "unavailable" until it is back), named uniquely and validly."""
        reserved = frozenset(reserved)
        key = (reserved, *((n, c.generation) for n, c in self._connections.items()))
        if self._tool_cache is not None and self._tool_cache[0] == key:
            return self._tool_cache[1]
        tools: list[AsyncBaseTool] = [
            self._function_tool(conn, tool, name)
            for conn, tool, name in self._named_tools(reserved)
        ]
        self._tool_cache = (key, tools)
        return tools

    def _named_tools(
        self, reserved: frozenset[str]
    ) -> list[tuple[ServerConnection, types.Tool, str]]:
        entries = []
        for conn in self._connections.values():
            cfg = conn.config
            for tool in conn.tools:
                if cfg.tools is not None and tool.name not in cfg.tools:
                    continue
                if tool.name in cfg.exclude_tools:
                    continue
                base = f"{cfg.prefix}_{tool.name}" if cfg.prefix else tool.name
                entries.append((conn, tool, sanitize_tool_name(base)))
        counts = Counter(name for _, _, name in entries)
        named, used = [], set(reserved)
        for conn, tool, name in entries:
            if counts[name] > 1 or name in reserved:
                name = sanitize_tool_name(f"{conn.config.name}_{tool.name}")
            unique, n = name, 1
            while unique in used:
                n += 1
                unique = sanitize_tool_name(f"{name}_{n}")
            used.add(unique)
            named.append((conn, tool, unique))
        return named

    def _function_tool(self, conn: ServerConnection, tool: types.Tool, name: str) -> FunctionTool:
        server, remote_name = conn.config.name, tool.name
        schema = model_from_schema(name, tool.input_schema)

        async def call(**arguments: Any) -> ToolCallResult:
            # Python-safe names back to the server's own (e.g. "file-path", "self").
            try:
                payload = schema.model_validate(arguments).model_dump(
                    by_alias=True, exclude_unset=True
                )
            except ValueError as exc:
                return ToolCallResult(f"Error: invalid arguments for '{name}': {exc}", True)
            # Look the connection up at call time: after a reload it may be a new one.
            current = self._connections.get(server)
            if current is None:
                return ToolCallResult(f"Error: the tool server '{server}' was removed.", True)
            return await current.call_tool(remote_name, payload)

        async def to_output(result: ToolCallResult) -> ToolOutput:
            return ToolOutput(
                content=result.text,
                tool_name=name,
                raw_input={},
                raw_output=result.text,
                is_error=result.is_error,
            )

        description = (tool.description or tool.title or remote_name).strip()
        description = f"{description} (tool '{remote_name}' of the '{server}' server)"
        return FunctionTool.from_defaults(
            async_fn=call,
            name=name,
            description=description[:MAX_DESCRIPTION],
            fn_schema=schema,
            async_callback=to_output,
        )

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> ToolCallResult:
        """Call a tool by its server's own name for it (for tests, benchmarks, the CLI)."""
        conn = self._connections.get(server)
        if conn is None:
            return ToolCallResult(f"Error: no tool server named '{server}'.", True)
        return await conn.call_tool(tool, arguments)
