"""Liveness and readiness probes (no API prefix, no authentication)."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.db.session import Database

router = APIRouter(tags=["health"])
log = structlog.stdlib.get_logger(__name__)

READY_TIMEOUT_SECONDS = 3.0


@router.get("/health", summary="Liveness: the process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    summary="Readiness: the database answers",
    responses={503: {"description": "A dependency is unavailable; `detail` says which"}},
)
async def ready(request: Request) -> JSONResponse:
    db: Database = request.app.state.db
    try:
        await db.ping(within=READY_TIMEOUT_SECONDS)
    except TimeoutError:
        reason = f"database did not answer within {READY_TIMEOUT_SECONDS:g}s"
    except Exception as exc:  # any failure to reach the database means "not ready"
        reason = f"database unreachable ({type(exc).__name__})"
    else:
        # External tool servers are reported, not required: the API works without them.
        mcp = {s["name"]: s["state"] for s in request.app.state.mcp.status()}
        return JSONResponse({"status": "ready", "database": "ok", "mcp_servers": mcp})
    log.warning("not_ready", reason=reason)
    return JSONResponse(
        {"detail": {"status": "unavailable", "database": reason}},
        status_code=503,
        headers={"Retry-After": "5"},
    )
