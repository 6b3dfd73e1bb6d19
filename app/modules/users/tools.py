"""The advisor's account tool."""

from __future__ import annotations

from typing import Any

from app.core.tools import NoParams, ToolContext, ToolError, ToolSpec
from app.modules.users.service import UserService


async def get_my_account(ctx: ToolContext, _: NoParams) -> dict[str, Any]:
    async with ctx.session() as session:
        user = await UserService(session, ctx.hasher).get(ctx.user_id)
    if user is None:
        raise ToolError("account not found")
    return {
        "name": user.name,
        "email": user.email,
        "role": user.role,
        "member_since": user.created_at.date().isoformat(),
    }


TOOLS = [
    ToolSpec(
        "get_my_account",
        "Get the owner's own account: name, email, role and when they joined Telaten.",
        NoParams,
        get_my_account,
        read_only=True,
    ),
]
