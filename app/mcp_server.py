"""Telaten's own tools over MCP: the advisor's domain tools for any MCP client.

One `MCPServer` (mcp SDK 2.x) serves `DOMAIN_TOOLS` — the same specs, schemas and
services the advisor uses — in the FastAPI app at `/mcp` (Streamable HTTP) and
`/mcp/sse` (legacy SSE, posting to `/mcp/messages/`), or over stdio
(`telaten mcp serve --stdio`).

Authentication is the API's own: every HTTP request to these paths must carry a bearer
*access* token of an active user (`AuthService.authenticate`: refresh tokens, expired or
forged tokens and deactivated users are a 401 before the MCP layer sees the request).
The caller's user id is bound for the request in a context variable, which the SDK
carries with each message to its tool handler, and every tool builds its `ToolContext`
from it: no tool takes a user or business id, so a token reaches its owner's business
only. `/mcp` is stateless (every request stands alone: no session another user could
reuse, and any worker or host can answer) and answers POST only: the tools never call the
client back, so there is no server-initiated stream to GET (the spec's 405).

A legacy SSE stream is the one long-lived connection: it is bound to the user who opened
it (the SDK refuses another credential on it), holds one of the user's
`MCP_SERVER_MAX_STREAMS_PER_USER` places (shared by every worker: the limits module's
slots), and ends when the token that opened it expires or stops being accepted (the
account deactivated, its sessions ended), re-checked every
`MCP_SERVER_STREAM_RECHECK_SECONDS`.
Over stdio the token comes from `TELATEN_ACCESS_TOKEN` and is checked before every call.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
import structlog
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.tools import DOMAIN_TOOLS, tool_context
from app.core.background import Worker
from app.core.config import Settings
from app.core.errors import TooManyRequestsError, UnauthorizedError
from app.core.mcp.connection import TELATEN_SERVER_NAME
from app.core.security import InvalidTokenError, PasswordHasher, TokenCodec
from app.core.tools import ToolSpec, run_spec
from app.modules.auth.service import AuthService
from app.modules.limits.service import LimitService, SlotLease

log = structlog.stdlib.get_logger(__name__)

HTTP_PATH = "/mcp"
SSE_PATH = "/mcp/sse"
SSE_MESSAGES_PATH = "/mcp/messages/"
INSTRUCTIONS = (
    "Tools of Telaten, the business companion for Indonesian small businesses: the "
    "owner's roadmap (milestones and tasks), money (transactions, reports, categories), "
    "points and the advisor's memory of the business. Every tool acts on the business "
    "of the account whose access token you use. Money is whole rupiah."
)

# Who is calling, for the request (or the stdio process) being served.
_caller: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar(
    "telaten_mcp_caller", default=None
)


@dataclass(frozen=True)
class MCPDeps:
    """What the tools and the token check need from the app."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    hasher: PasswordHasher
    tokens: TokenCodec
    roadmap_worker: Worker | None

    async def user_id_for(self, token: str) -> uuid.UUID:
        """The active user behind an access token; `UnauthorizedError` otherwise."""
        async with self.sessionmaker() as session:
            auth = AuthService(session, self.settings, self.hasher, self.tokens)
            return (await auth.authenticate(token)).id


def build_mcp_server(deps: MCPDeps, *, stdio_token: str | None = None) -> MCPServer:
    """The server with every domain tool. Over stdio, `stdio_token` is the credential."""
    # (Telaten's own MCP client refuses a server of this name in mcp.json: see the constant.)
    server = MCPServer(
        TELATEN_SERVER_NAME, title="Telaten", instructions=INSTRUCTIONS, version="0.1.0"
    )
    for spec in DOMAIN_TOOLS:
        server.add_tool(
            _tool_function(spec, deps, stdio_token),
            name=spec.name,
            title=spec.name.replace("_", " ").capitalize(),
            description=spec.description,
            annotations=ToolAnnotations(
                read_only_hint=spec.read_only,
                destructive_hint=spec.destructive,
                idempotent_hint=spec.read_only,
                open_world_hint=False,
            ),
            structured_output=False,
        )
    return server


def _tool_function(spec: ToolSpec, deps: MCPDeps, stdio_token: str | None) -> Callable[..., Any]:
    """An async function whose signature is the spec's parameters (the SDK derives the
    input schema and validates arguments from it) and which runs the spec for the
    authenticated caller."""

    async def call(**arguments: Any) -> str:
        user_id = await _stdio_user(deps, stdio_token) if stdio_token else _caller.get()
        if user_id is None:  # the HTTP gate lets nothing through without a user
            raise ToolError("Not authenticated")
        ctx = tool_context(
            user_id,
            sessionmaker=deps.sessionmaker,
            hasher=deps.hasher,
            settings=deps.settings,
            roadmap_worker=deps.roadmap_worker,
            conversation=None,  # MCP clients confirm destructive tools with their user
        )
        text, is_error = await run_spec(spec, ctx, arguments)
        if is_error:
            raise ToolError(text.removeprefix("Error: "))
        return text

    call.__name__ = spec.name
    call.__doc__ = spec.description
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # inspect.signature reads it
        [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[field.annotation, field],
                default=inspect.Parameter.empty if field.is_required() else field.get_default(),
            )
            for name, field in spec.params.model_fields.items()
        ],
        return_annotation=str,
    )
    return call


async def _stdio_user(deps: MCPDeps, token: str) -> uuid.UUID:
    try:
        return await deps.user_id_for(token)
    except UnauthorizedError as exc:  # expired since the start, or the account was closed
        raise ToolError(
            f"{STDIO_TOKEN_ENV}: {exc.detail}; log in again and restart with a fresh token"
        ) from None


def bearer_token(scope: Scope) -> str | None:
    """The request's bearer token, if it carries one."""
    scheme, _, token = Request(scope).headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class BearerGate:
    """ASGI wrapper: the request's bearer access token must belong to an active user
    (401 JSON otherwise, like the API); the user's id is bound for the request."""

    def __init__(self, app: ASGIApp, deps: MCPDeps) -> None:
        self.app = app
        self.deps = deps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            token = bearer_token(scope)
            if token is None:
                raise UnauthorizedError("Not authenticated")
            user_id = await self.deps.user_id_for(token)
        except UnauthorizedError as exc:
            response: Response = JSONResponse(
                {"detail": exc.detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        structlog.contextvars.bind_contextvars(user_id=str(user_id))
        scope.setdefault("state", {})["user_id"] = str(user_id)  # for the access log
        # The SDK binds a session to this principal: another user's token cannot use it.
        scope["user"] = AuthenticatedUser(
            AccessToken(token="", client_id="telaten", scopes=[], subject=str(user_id))
        )
        bound = _caller.set(user_id)
        try:
            await self.app(scope, receive, send)
        finally:
            _caller.reset(bound)


class MountedMCP:
    """The MCP server's HTTP side inside the FastAPI app: routes and their lifespan."""

    def __init__(self, deps: MCPDeps) -> None:
        server = build_mcp_server(deps)
        # The bearer token is the protection: no Host/Origin allow-list to maintain
        # (a DNS-rebinding page cannot present the owner's token).
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        lowlevel = server._lowlevel_server  # what the SDK's own app builders use
        # Stateless, JSON answers: the tools never call back into the client, so nothing
        # needs a session.
        self.sessions = StreamableHTTPSessionManager(
            app=lowlevel, security_settings=security, stateless=True, json_response=True
        )
        self.sse = SseServerTransport(SSE_MESSAGES_PATH, security_settings=security)
        self.deps = deps

        async def sse_stream(scope: Scope, receive: Receive, send: Send) -> None:
            user_id, token = _caller.get(), bearer_token(scope)
            if user_id is None or token is None:  # unreachable behind the gate
                raise UnauthorizedError("Not authenticated")
            try:
                holder = await self._take_stream_place(user_id)
            except TooManyRequestsError as exc:  # plain JSON, before any stream starts
                busy = JSONResponse({"detail": exc.detail}, status_code=429, headers=exc.headers)
                await busy(scope, receive, send)
                return
            response = _EndableResponse(send)
            async with (
                SlotLease(deps.sessionmaker, holder).held(),
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(self._end_with_credential, token, tg.cancel_scope)
                async with self.sse.connect_sse(scope, receive, response.send) as (r, w):
                    await lowlevel.run(r, w, lowlevel.create_initialization_options())
                tg.cancel_scope.cancel()  # the client went away: stop watching
            await response.end(scope, receive)

        self.routes = [
            # POST only: other methods are a JSON 405 with `Allow: POST`.
            Route(
                HTTP_PATH,
                endpoint=BearerGate(StreamableHTTPASGIApp(self.sessions), deps),
                methods=["POST"],
            ),
            Route(SSE_PATH, endpoint=BearerGate(sse_stream, deps), methods=["GET"]),
            Mount(
                SSE_MESSAGES_PATH.rstrip("/"),
                app=BearerGate(self.sse.handle_post_message, deps),
            ),
        ]

    async def _take_stream_place(self, user_id: uuid.UUID) -> uuid.UUID:
        """One of the user's places for an open stream (every worker counts), or 429."""
        limit = self.deps.settings.MCP_SERVER_MAX_STREAMS_PER_USER
        async with self.deps.sessionmaker() as session:
            return await LimitService(session).take_slot(
                f"mcp-stream:{user_id}", limit, refusal=f"At most {limit} open MCP SSE streams"
            )

    async def _end_with_credential(self, token: str, stream: anyio.CancelScope) -> None:
        """Cancel `stream` when its token expires or is no longer accepted (the account
        deactivated, its sessions ended): checked every MCP_SERVER_STREAM_RECHECK_SECONDS,
        and at the token's expiry. A database that does not answer ends nothing: the
        check is tried again next round."""
        every = self.deps.settings.MCP_SERVER_STREAM_RECHECK_SECONDS
        try:
            expires_at = self.deps.tokens.decode(token, "access").expires_at
        except InvalidTokenError:  # expired between the gate and here
            expires_at = datetime.now(UTC)
        while True:
            left = (expires_at - datetime.now(UTC)).total_seconds()
            if left <= 0:
                reason = "token expired"
                break
            await anyio.sleep(min(every, left))
            if left <= every:
                continue  # slept until the expiry: the loop's head ends the stream
            try:
                with anyio.fail_after(max(every, 10)):  # a hung check must not stop the next
                    await self.deps.user_id_for(token)
            except UnauthorizedError:
                reason = "token no longer accepted"
                break
            except Exception:
                log.warning("mcp_stream_recheck_failed", exc_info=True)
        log.info("mcp_sse_stream_ended", reason=reason)
        stream.cancel()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The Streamable HTTP manager's task group, for the app's lifespan."""
        async with self.sessions.run():
            yield


class _EndableResponse:
    """Passes a streaming response's messages on and remembers how far it got, so a
    stream cancelled from outside can still be ended as a complete HTTP response (the
    client sees the stream end, not a cut connection)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.complete = False

    async def send(self, message: Message) -> None:
        await self._send(message)
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True

    async def end(self, scope: Scope, receive: Receive) -> None:
        if self.complete:
            return
        if not self.started:  # the token lapsed before the stream began
            refused = JSONResponse(
                {"detail": "Could not validate credentials"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await refused(scope, receive, self._send)
            return
        with contextlib.suppress(Exception):  # the client may be gone already
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


STDIO_TOKEN_ENV = "TELATEN_ACCESS_TOKEN"  # noqa: S105 - the name of a variable


async def serve_stdio(settings: Settings, token: str) -> None:
    """Serve the tools over stdin/stdout for one account. This process reads the
    database and signing key itself, so it is for the server's own host (an operator's
    or a local desktop client); remote clients use `/mcp`. The token is checked first: a
    bad one ends the process before the client gets a server that refuses every call."""
    from app.core.llm import build_llm
    from app.db.session import Database

    db = Database(settings)  # the schema is the server's to migrate, not this process's
    try:
        deps = MCPDeps(
            settings=settings,
            sessionmaker=db.sessionmaker,
            hasher=PasswordHasher(rounds=settings.BCRYPT_ROUNDS),
            tokens=TokenCodec.from_settings(settings),
            # Requests for a next roadmap are recorded; the API server's worker runs them.
            roadmap_worker=_RecordOnly() if build_llm(settings) is not None else None,
        )
        user_id = await deps.user_id_for(token)
        log.info("mcp_stdio_serving", user_id=str(user_id))
        await build_mcp_server(deps, stdio_token=token).run_stdio_async()
    finally:
        await db.dispose()


class _RecordOnly:
    """The roadmap worker's stand-in in a process that runs none: requests are recorded
    in the database, where the API server's worker finds them within seconds."""

    def wake(self) -> None:
        pass
