"""The FastAPI application: `create_app()` and its lifespan.

Startup and shutdown order lives here only:
startup: logging -> database schema to head -> first admin -> MCP servers (each within its
own timeout) -> roadmap worker -> housekeeping task -> our own MCP endpoint's sessions ->
startup's objects frozen for the garbage collector -> ready; shutdown: the MCP endpoint's
sessions -> roadmap worker (its requests go back to the queue) -> MCP client sessions and
child processes -> housekeeping -> the database pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.api.deps import get_auth_service
from app.api.health import router as health_router
from app.api.router import api_router
from app.client_api.errors import ErrorMessageMiddleware
from app.client_api.router import client_router
from app.context import AppContext
from app.core.config import Settings, SettingsError, get_settings
from app.core.errors import BODY_ERROR_RESPONSES, install_exception_handlers
from app.core.logging import configure_logging
from app.core.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from app.db.init_data import ensure_first_admin
from app.db.session import init_db
from app.db.types import utcnow
from app.mcp_server import MCPDeps, MountedMCP
from app.modules.limits.service import LimitService

log = structlog.stdlib.get_logger("app")

HOUSEKEEPING_INTERVAL_SECONDS = 3600


async def _housekeeping(context: AppContext) -> None:
    """Delete expired refresh tokens, rate-limit events past their window and lapsed
    usage slots, now and every hour."""
    settings = context.settings
    while True:
        try:
            async with context.db.sessionmaker() as session:
                service = await get_auth_service(session, context)
                tokens = await service.purge_expired()
                horizon = utcnow() - timedelta(seconds=settings.longest_rate_window_seconds)
                events, slots = await LimitService(session).purge(horizon)
            if tokens or events or slots:
                # (no "token" in the key: the log redactor would hide the count)
                log.info(
                    "housekeeping",
                    expired_refresh_rows=tokens,
                    stale_rate_events=events,
                    lapsed_slots=slots,
                )
        except Exception:  # the database may be down; try again next round
            log.warning("housekeeping_failed", exc_info=True)
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_SECONDS)


_startup_frozen = False


def _freeze_startup_objects() -> None:
    """Keep what the imports and startup made (~370,000 long-lived objects) out of the
    garbage collector's full collections, which otherwise walk all of them: ~200 ms with
    the event loop stopped, every few seconds while requests allocate heavily (a CSV
    export does; measured with bench/export.py). Once per process."""
    global _startup_frozen
    if not _startup_frozen:
        _startup_frozen = True
        gc.collect()
        gc.freeze()


def _lifespan(
    context: AppContext, own_mcp: MountedMCP
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        settings, db, roadmap_worker = context.settings, context.db, context.roadmap_worker
        log.info("starting", env=settings.ENV, database=db.engine.dialect.name)
        await init_db(db)
        await ensure_first_admin(db, settings, context.hasher)
        await context.mcp.start()
        if roadmap_worker is not None:
            await roadmap_worker.start()
        housekeeping = asyncio.create_task(_housekeeping(context), name="housekeeping")
        try:
            async with own_mcp.running():  # Telaten's own MCP endpoint
                _freeze_startup_objects()
                yield
        finally:
            if roadmap_worker is not None:
                await roadmap_worker.stop()
            await context.mcp.stop()
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            await db.dispose()
            log.info("stopped")

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    context = AppContext.build(settings)
    own_mcp = MountedMCP(
        MCPDeps(
            settings=settings,
            sessionmaker=context.db.sessionmaker,
            hasher=context.hasher,
            tokens=context.tokens,
            roadmap_worker=context.roadmap_worker,
        )
    )
    docs = settings.docs_enabled  # DOCS_ENABLED: off in production unless asked for
    app = FastAPI(
        title=settings.PROJECT_NAME,
        version="0.1.0",
        openapi_url=f"{settings.API_V1_STR}/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        lifespan=_lifespan(context, own_mcp),
    )
    app.state.context = context  # read through app/api/deps.py (get_context) only

    install_exception_handlers(app)
    # Middleware, innermost first (each one added wraps the ones before it).
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.MAX_REQUEST_BODY_BYTES)
    # Around everything that logs or fails: the request id is bound before anything logs.
    app.add_middleware(RequestContextMiddleware)
    if settings.CLIENT_API_PREFIX:
        app.add_middleware(ErrorMessageMiddleware, prefix=settings.CLIENT_API_PREFIX)
    if settings.CORS_ORIGINS:
        # Outermost, so that every answer carries the CORS headers, errors from the
        # middleware above included: a browser shows a client nothing of an answer without.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            # Credentials (the refresh cookie) only for origins named one by one: with "*"
            # any site could make logged-in requests.
            allow_credentials="*" not in settings.CORS_ORIGINS,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )

    app.include_router(health_router)
    app.router.routes.extend(own_mcp.routes)  # /mcp, /mcp/sse
    app.include_router(api_router, prefix=settings.API_V1_STR)
    if settings.CLIENT_API_PREFIX:
        app.include_router(client_router, prefix=settings.CLIENT_API_PREFIX)
    _finish_openapi(app, f"{settings.API_V1_STR}/auth/token")
    return app


def _finish_openapi(app: FastAPI, token_url: str) -> None:
    """Give Swagger's Authorize dialog the absolute token URL for this app's prefix, and
    declare on every operation that reads a body what the body handling itself may answer
    before the route runs (400 undecodable, 413 too large)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.get("components", {}).get("securitySchemes", {})
            for scheme in schemes.values():
                if scheme.get("type") == "oauth2" and "password" in scheme.get("flows", {}):
                    scheme["flows"]["password"]["tokenUrl"] = token_url
            for path_item in schema.get("paths", {}).values():
                for operation in path_item.values():
                    if not isinstance(operation, dict):
                        continue
                    responses = operation.setdefault("responses", {})
                    if "requestBody" in operation:
                        for code, response in BODY_ERROR_RESPONSES.items():
                            responses.setdefault(str(code), dict(response))
                    _errors_are_json(responses)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI documents this override


def _errors_are_json(responses: dict[str, Any]) -> None:
    """A streaming operation's refusals are JSON error bodies, sent before any stream:
    FastAPI documents every response model under the operation's media type."""
    for code, response in responses.items():
        content = response.get("content", {}) if isinstance(response, dict) else {}
        if code[:1] in "45" and "text/event-stream" in content:
            content.setdefault("application/json", content.pop("text/event-stream"))


def _app_from_environment() -> FastAPI:
    try:
        return create_app()
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None


def __getattr__(name: str) -> FastAPI:
    # `uvicorn app.main:app` builds the app on first access, not at import, so tests
    # and tools can import this module without reading the environment.
    if name == "app":
        return _app_from_environment()
    raise AttributeError(name)
