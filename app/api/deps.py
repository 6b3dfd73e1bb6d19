"""Dependencies shared by routes: the session, services, and who is calling."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.errors import PermissionDeniedError, UnauthorizedError
from app.core.security import PasswordHasher, TokenCodec
from app.db.session import get_db
from app.modules.auth.service import AuthService
from app.modules.business.models import BusinessProfile
from app.modules.business.service import BusinessService
from app.modules.milestone.worker import RoadmapWorker
from app.modules.users.models import User
from app.modules.users.service import UserService

# Relative to the OpenAPI document (served under API_V1_STR), so Swagger's Authorize
# button posts to {API_V1_STR}/auth/token whatever the prefix is.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="auth/token", auto_error=False)

SessionDep = Annotated[AsyncSession, Depends(get_db)]


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_hasher(request: Request) -> PasswordHasher:
    return request.app.state.hasher


def get_codec(request: Request) -> TokenCodec:
    return request.app.state.tokens


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def client_address(request: Request) -> str:
    """The caller's address, as throttling counts it (behind a trusted proxy, the one
    it reports: FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


def get_auth_service(
    session: SessionDep,
    settings: SettingsDep,
    hasher: Annotated[PasswordHasher, Depends(get_hasher)],
    codec: Annotated[TokenCodec, Depends(get_codec)],
) -> AuthService:
    return AuthService(session, settings, hasher, codec)


def get_user_service(
    session: SessionDep, hasher: Annotated[PasswordHasher, Depends(get_hasher)]
) -> UserService:
    return UserService(session, hasher)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
UserServiceDep = Annotated[UserService, Depends(get_user_service)]


async def get_current_user(
    request: Request,
    auth: AuthServiceDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    """The active user behind the Bearer access token (401 otherwise)."""
    if not token:
        raise UnauthorizedError("Not authenticated")
    user = await auth.authenticate(token)
    request.state.user_id = str(user.id)  # for the access log line
    structlog.contextvars.bind_contextvars(user_id=str(user.id))
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def require_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise PermissionDeniedError("Admin role required")
    return user


AdminUser = Annotated[User, Depends(require_admin)]


async def get_current_business(user: CurrentUser, session: SessionDep) -> BusinessProfile:
    """The caller's business profile (404 telling them to create one if there is none)."""
    return await BusinessService(session).mine_or_404(user.id)


CurrentBusiness = Annotated[BusinessProfile, Depends(get_current_business)]


def get_roadmap_scheduler(request: Request) -> RoadmapWorker | None:
    """The roadmap worker; None while no LLM is configured (nothing is generated)."""
    return request.app.state.roadmaps


RoadmapSchedulerDep = Annotated[RoadmapWorker | None, Depends(get_roadmap_scheduler)]
