"""One MCP server: a long-lived session held by one owner task.

The owner task opens the transport and the `ClientSession`, initialises, lists the
tools (following pagination), reports ready, then keeps the session alive (pinging it)
until asked to stop or until it breaks; it then closes everything itself, in the same
task that opened it, as the SDK's task groups require. A broken or unreachable server
is retried with exponential backoff. Other tasks call tools on the live session
concurrently; they never open or close anything.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
import mcp_types as types
import structlog
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from app.core.mcp.config import ServerConfig
from app.core.mcp.content import result_to_text

log = structlog.stdlib.get_logger(__name__)

State = Literal["connecting", "up", "down", "stopped"]
MAX_TOOL_PAGES = 100
CLIENT_INFO = types.Implementation(name="telaten-backend", version="0.1.0")
# The name Telaten's own MCP server introduces itself with (app/mcp_server.py), at /mcp,
# /mcp/sse and over stdio, this deployment's or another's. Its tools act on the one account
# whose token the connection carries, and mcp.json's servers serve every user who chats:
# such an entry would hand that account's books to all of them, so it is refused.
TELATEN_SERVER_NAME = "telaten"
TELATEN_REFUSAL = (
    "refused: this is a Telaten MCP server, whose tools act on the one account of the "
    "token in this entry for every user who chats; remove it from mcp.json"
)


@dataclass(frozen=True)
class ToolCallResult:
    text: str
    is_error: bool


class ServerUnavailableError(Exception):
    pass


class RefusedServerError(Exception):
    """A server that must not be used at all; it is not retried."""


class ServerConnection:
    def __init__(
        self,
        config: ServerConfig,
        *,
        log_dir: Path,
        ping_interval: float,
        max_backoff: float,
    ) -> None:
        self.config = config
        self.log_dir = log_dir
        self.ping_interval = ping_interval
        self.max_backoff = max_backoff
        self.state: State = "connecting"
        self.last_error: str | None = None
        self.tools: list[types.Tool] = []  # the last listing; kept while down
        self.connected_at: float | None = None
        self.attempts = 0
        self.generation = 0  # bumped whenever `tools` changes
        self.session: ClientSession | None = None
        self.first_attempt_done = anyio.Event()
        self._reported = False
        self._stop = anyio.Event()
        self._broken = anyio.Event()

    # --- owner task -------------------------------------------------------------------

    async def run(self) -> None:
        """The owner task: connect, serve, reconnect with backoff, until stopped."""
        backoff = 0.5
        while not self._stop.is_set():
            self.attempts += 1
            self._broken = anyio.Event()
            self._reported = False
            try:
                await self._attempt()
                backoff = 0.5  # it was up: start the next backoff from scratch
            except Exception as exc:  # every failure means: down, try again later
                if not self._reported:
                    self._mark_down(_describe(exc))
                if isinstance(_innermost(exc), RefusedServerError):
                    self.first_attempt_done.set()
                    await self._stop.wait()  # never retried; a reload or shutdown ends it
            finally:
                self.first_attempt_done.set()
            if self._stop.is_set():
                break
            with anyio.move_on_after(backoff):
                await self._stop.wait()
            backoff = min(backoff * 2, self.max_backoff)
        self.state = "stopped"
        self.session = None

    async def _attempt(self) -> None:
        """One connection, from opening the transport to closing it.

        Everything runs inside one task group whose cancel scope encloses every context
        the connection opens (so scopes nest as anyio requires), with two watchers: one
        cancels the attempt if it is not up within the connect timeout, however it got stuck
        (spawning, an SSE stream that never sends its endpoint, initialize, listing);
        the other cancels it as soon as the connection is asked to stop.
        """
        up = anyio.Event()
        timed_out = False

        async with anyio.create_task_group() as tg:

            async def deadline() -> None:
                nonlocal timed_out
                with anyio.move_on_after(self.config.connect_timeout):
                    await up.wait()
                    return
                timed_out = True
                self._report_failure("timed out")
                tg.cancel_scope.cancel()

            async def stopper() -> None:
                await self._stop.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(deadline)
            tg.start_soon(stopper)
            try:
                await self._connect_and_serve(up)
            except Exception as exc:
                self._report_failure(_describe(exc))
                raise
            finally:
                tg.cancel_scope.cancel()
        if timed_out:
            raise TimeoutError

    def _report_failure(self, reason: str) -> None:
        """Mark down now: closing a stuck server can take a few more seconds, and
        startup must not wait for that."""
        if self._reported or self.state == "up":
            return
        self._mark_down(reason)
        self._reported = True
        self.first_attempt_done.set()

    async def _connect_and_serve(self, up: anyio.Event) -> None:
        self.state = "connecting"
        async with AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._transport(stack))
            session = await stack.enter_async_context(
                ClientSession(read, write, client_info=CLIENT_INFO)
            )
            init = await session.initialize()
            if init.server_info.name == TELATEN_SERVER_NAME:
                raise RefusedServerError(TELATEN_REFUSAL)
            tools = await self._list_all_tools(session)
            self.session = session
            self._set_tools(tools)
            self.state, self.last_error = "up", None
            self.connected_at = time.time()
            up.set()
            self.first_attempt_done.set()
            log.info("mcp_server_up", server=self.config.name, tools=len(tools))
            try:
                await self._keep_alive(session)
            finally:
                self.session = None  # no new calls on a session that is closing

    def _transport(self, stack: AsyncExitStack) -> Any:
        cfg = self.config
        if cfg.transport == "stdio":
            self.log_dir.mkdir(parents=True, exist_ok=True)
            errlog = stack.enter_context((self.log_dir / f"mcp-{cfg.name}.log").open("a"))
            params = StdioServerParameters(
                command=cfg.command or "", args=list(cfg.args), env=dict(cfg.env), cwd=cfg.cwd
            )
            return stdio_client(params, errlog=errlog)
        if cfg.transport == "sse":
            return sse_client(
                cfg.url or "",
                headers=dict(cfg.headers),
                timeout=cfg.timeout,
                # Silence longer than this drops the stream (and we reconnect).
                sse_read_timeout=max(60.0, self.ping_interval * 3),
            )
        client = create_mcp_http_client(
            headers=dict(cfg.headers),
            timeout=httpx2.Timeout(cfg.timeout, connect=cfg.connect_timeout, read=300),
        )
        stack.push_async_callback(client.aclose)
        return streamable_http_client(cfg.url or "", http_client=client)

    async def _list_all_tools(self, session: ClientSession) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _keep_alive(self, session: ClientSession) -> None:
        """Wait for stop or breakage; ping in between so a dead server is noticed."""
        while True:
            with anyio.move_on_after(self.ping_interval):
                async with anyio.create_task_group() as tg:

                    async def wake_on(event: anyio.Event) -> None:
                        await event.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(wake_on, self._stop)
                    tg.start_soon(wake_on, self._broken)
            if self._stop.is_set():
                return
            if self._broken.is_set():
                raise ServerUnavailableError("the connection broke during a call")
            with anyio.fail_after(self.config.timeout):
                await session.send_ping()

    def _set_tools(self, tools: list[types.Tool]) -> None:
        if [t.model_dump() for t in tools] != [t.model_dump() for t in self.tools]:
            self.tools = tools
            self.generation += 1

    def _mark_down(self, reason: str) -> None:
        self.session = None
        if self._stop.is_set():
            return
        was_up = self.state == "up"
        self.state, self.last_error = "down", reason
        event = "mcp_server_down" if was_up else "mcp_server_unreachable"
        log.warning(event, server=self.config.name, error=reason, attempt=self.attempts)

    # --- used by other tasks ----------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolCallResult:
        session = self.session
        if session is None or self.state != "up":
            reason = f" (last error: {self.last_error})" if self.last_error else ""
            return ToolCallResult(
                f"Error: the tool server '{self.config.name}' is unavailable right now{reason}. "
                "It is reconnecting; try again later or do without this tool.",
                is_error=True,
            )
        try:
            with anyio.fail_after(self.config.timeout):
                result = await session.call_tool(
                    name, arguments, read_timeout_seconds=self.config.timeout
                )
        except TimeoutError:
            return ToolCallResult(
                f"Error: the tool '{name}' on '{self.config.name}' did not answer within "
                f"{self.config.timeout:g} s.",
                is_error=True,
            )
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                self._broken.set()
                return ToolCallResult(
                    f"Error: the tool server '{self.config.name}' went away during the call; "
                    "it is reconnecting.",
                    is_error=True,
                )
            return ToolCallResult(f"Error from '{self.config.name}': {exc.message}", is_error=True)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError):
            self._broken.set()
            return ToolCallResult(
                f"Error: the tool server '{self.config.name}' went away during the call; "
                "it is reconnecting.",
                is_error=True,
            )
        return ToolCallResult(result_to_text(result), is_error=bool(result.is_error))

    def status(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "transport": self.config.transport,
            "target": self.config.target,
            "state": self.state,
            "tools": [t.name for t in self.tools],
            "last_error": self.last_error,
            "connected_at": self.connected_at,
            "attempts": self.attempts,
        }


def _innermost(exc: BaseException) -> BaseException:
    """The real error inside (nested) task-group failures."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """A short reason for people: the innermost real error of a task-group failure."""
    exc = _innermost(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, RefusedServerError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
