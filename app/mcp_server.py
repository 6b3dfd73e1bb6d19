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
reuse, and any worker or host can answer). A legacy SSE session is bound to the user who
opened it (the SDK refuses another credential on it), with a few open streams per user.
Over stdio the token comes from `TELATEN_ACCESS_TOKEN` and is checked before every call.
"""

from __future__ import annotations

import contextvars
import inspect
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

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
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.config import Settings
from app.core.errors import UnauthorizedError
from app.core.security import PasswordHasher, TokenCodec
from app.modules.agent.toolkit import ToolContext, ToolSpec, run_spec
from app.modules.agent.tools import DOMAIN_TOOLS
from app.modules.auth.service import AuthService
from app.modules.milestone.service import RoadmapScheduler

log = structlog.stdlib.get_logger(__name__)

HTTP_PATH = "/mcp"
SSE_PATH = "/mcp/sse"
SSE_MESSAGES_PATH = "/mcp/messages/"
MAX_SSE_STREAMS_PER_USER = 5
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
    scheduler: RoadmapScheduler | None

    async def user_id_for(self, token: str) -> uuid.UUID:
        """The active user behind an access token; `UnauthorizedError` otherwise."""
        async with self.sessionmaker() as session:
            auth = AuthService(session, self.settings, self.hasher, self.tokens)
            return (await auth.authenticate(token)).id


def build_mcp_server(deps: MCPDeps, *, stdio_token: str | None = None) -> MCPServer:
    """The server with every domain tool. Over stdio, `stdio_token` is the credential."""
    server = MCPServer("telaten", title="Telaten", instructions=INSTRUCTIONS, version="0.1.0")
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
        ctx = ToolContext(
            user_id=user_id,
            sessionmaker=deps.sessionmaker,
            hasher=deps.hasher,
            settings=deps.settings,
            scheduler=deps.scheduler,
            conversation=None,  # MCP clients confirm destructive tools with their user
        )
        text, is_error = await run_spec(spec, ctx, arguments)
        if is_error:
            raise ToolError(text.removeprefix("Error: "))
        return text

    call.__name__ = spec.name
    call.__doc__ = spec.description
    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
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
        scheme, _, token = Request(scope).headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise UnauthorizedError("Not authenticated")
            user_id = await self.deps.user_id_for(token.strip())
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
        self._sse_streams: Counter[uuid.UUID] = Counter()

        async def sse_stream(scope: Scope, receive: Receive, send: Send) -> None:
            user_id = _caller.get()
            if user_id is None or self._sse_streams[user_id] >= MAX_SSE_STREAMS_PER_USER:
                busy = JSONResponse(
                    {"detail": f"At most {MAX_SSE_STREAMS_PER_USER} open MCP SSE streams"},
                    status_code=429,
                    headers={"Retry-After": "30"},
                )
                await busy(scope, receive, send)
                return
            self._sse_streams[user_id] += 1
            try:
                async with self.sse.connect_sse(scope, receive, send) as (read, write):
                    await lowlevel.run(read, write, lowlevel.create_initialization_options())
            finally:
                self._sse_streams[user_id] -= 1

        self.routes = [
            Route(
                HTTP_PATH,
                endpoint=BearerGate(StreamableHTTPASGIApp(self.sessions), deps),
                methods=["GET", "POST", "DELETE"],
            ),
            Route(SSE_PATH, endpoint=BearerGate(sse_stream, deps), methods=["GET"]),
            Mount(
                SSE_MESSAGES_PATH.rstrip("/"),
                app=BearerGate(self.sse.handle_post_message, deps),
            ),
        ]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The Streamable HTTP manager's task group, for the app's lifespan."""
        async with self.sessions.run():
            yield


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
            scheduler=_RecordOnly() if build_llm(settings) is not None else None,
        )
        user_id = await deps.user_id_for(token)
        log.info("mcp_stdio_serving", user_id=str(user_id))
        await build_mcp_server(deps, stdio_token=token).run_stdio_async()
    finally:
        await db.dispose()


class _RecordOnly:
    """A scheduler for a process that runs no roadmap worker: requests are recorded in
    the database, where the API server's worker finds them within seconds."""

    def wake(self) -> None:
        pass
