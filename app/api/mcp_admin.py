"""`/admin/mcp`: the external tool servers, for admins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import AdminUser, ContextDep
from app.core.mcp import MCPManager

router = APIRouter(
    prefix="/admin/mcp",
    tags=["admin"],
    responses={401: {"description": "Not authenticated"}, 403: {"description": "Not an admin"}},
)


class ServerStatus(BaseModel):
    name: str
    transport: str
    target: str
    state: str
    tools: list[str]
    last_error: str | None
    connected_at: float | None
    attempts: int


class ServerList(BaseModel):
    servers: list[ServerStatus]
    config_errors: list[str]


class ReloadResult(ServerList):
    added: list[str]
    removed: list[str]
    restarted: list[str]


def _listing(manager: MCPManager) -> dict[str, Any]:
    return {"servers": manager.status(), "config_errors": manager.config_errors}


@router.get("/servers", response_model=ServerList)
async def list_servers(_admin: AdminUser, context: ContextDep) -> ServerList:
    """Each server's transport, state (connecting/up/down), tools and last error."""
    return ServerList.model_validate(_listing(context.mcp))


@router.post("/reload", response_model=ReloadResult)
async def reload_servers(_admin: AdminUser, context: ContextDep) -> ReloadResult:
    """Re-read mcp.json without a restart: new servers start, removed ones stop, changed
    ones restart, unchanged ones keep their sessions."""
    manager = context.mcp
    changes = await manager.reload()
    return ReloadResult.model_validate({**_listing(manager), **changes})
