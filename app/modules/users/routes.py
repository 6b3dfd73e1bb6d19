"""`/admin/users`: account administration (admin role only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AdminUser, UserServiceDep
from app.core.types import Limit, Offset, SearchText
from app.modules.users.schemas import UserAdminUpdate, UserPage, UserPublic

router = APIRouter(
    prefix="/admin/users",
    tags=["admin"],
    responses={401: {"description": "Not authenticated"}, 403: {"description": "Not an admin"}},
)


@router.get("", response_model=UserPage)
async def list_users(
    _admin: AdminUser,
    users: UserServiceDep,
    q: Annotated[SearchText | None, Query(description="Search in email and name")] = None,
    limit: Annotated[Limit, Query()] = 20,
    offset: Annotated[Offset, Query()] = 0,
) -> UserPage:
    items, total = await users.search(q, limit, offset)
    return UserPage(
        items=[UserPublic.model_validate(u) for u in items], total=total, limit=limit, offset=offset
    )


@router.get(
    "/{user_id}", response_model=UserPublic, responses={404: {"description": "No such user"}}
)
async def get_user(user_id: uuid.UUID, _admin: AdminUser, users: UserServiceDep) -> UserPublic:
    return UserPublic.model_validate(await users.get_or_404(user_id))


@router.patch(
    "/{user_id}",
    response_model=UserPublic,
    responses={
        404: {"description": "No such user"},
        409: {"description": "Would leave no active admin"},
    },
)
async def update_user(
    user_id: uuid.UUID, data: UserAdminUpdate, admin: AdminUser, users: UserServiceDep
) -> UserPublic:
    """Change a user's role and/or deactivate/reactivate them."""
    return UserPublic.model_validate(await users.admin_update(admin, user_id, data))
