"""Liveness and readiness probes (no API prefix; no authentication needed).

What a load balancer needs is public: the status and the database's state, with the
status code. The MCP servers' names and states are for admins: an admin's bearer token
adds them to the readiness answer.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app.api.deps import ContextDep, get_auth_service, oauth2_scheme
from app.context import AppContext

router = APIRouter(tags=["health"])
log = structlog.stdlib.get_logger(__name__)

READY_TIMEOUT_SECONDS = 3.0


@router.get("/health", summary="Liveness: the process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    summary="Readiness: the database answers",
    description="With an admin's bearer token the answer also names the external MCP "
    "servers and their states (`mcp_servers`); anyone else gets the status and the "
    "database's state only.",
    responses={503: {"description": "A dependency is unavailable; `detail` says which"}},
)
async def ready(
    context: ContextDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> JSONResponse:
    db = context.db
    try:
        await db.ping(within=READY_TIMEOUT_SECONDS)
    except TimeoutError:
        reason = f"database did not answer within {READY_TIMEOUT_SECONDS:g}s"
    except Exception as exc:  # any failure to reach the database means "not ready"
        reason = f"database unreachable ({type(exc).__name__})"
    else:
        body: dict[str, object] = {"status": "ready", "database": "ok"}
        if token and await _is_admin(context, token):
            # External tool servers are reported, not required: the API works without them.
            body["mcp_servers"] = {s["name"]: s["state"] for s in context.mcp.status()}
        return JSONResponse(body)
    log.warning("not_ready", reason=reason)
    return JSONResponse(
        {"detail": {"status": "unavailable", "database": reason}},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _is_admin(context: AppContext, token: str) -> bool:
    """Whether `token` is an access token of an active admin. Anything else (a bad or
    expired token, another role, a database that does not answer) gets the public view:
    a probe is never refused for its credentials."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), context.db.sessionmaker() as session:
            auth = await get_auth_service(session, context)
            return (await auth.authenticate(token)).is_admin
    except Exception:
        return False
