"""Dependencies shared by routes: the application context, the session, one provider
per service, and who is calling. All are `async def`: FastAPI runs a plain `def`
dependency in its thread pool, a hop per dependency per request for work that never
blocks.

The only place that reads the app's state: everything else gets the typed
`AppContext` (or what is built from it) by depending on these."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.context import AppContext
from app.core.config import Settings
from app.core.errors import PermissionDeniedError, UnauthorizedError
from app.modules.auth.service import AuthService
from app.modules.business.models import BusinessProfile
from app.modules.business.service import BusinessService
from app.modules.finance.service import FinanceService
from app.modules.milestone.roadmaps import RoadmapRequests
from app.modules.milestone.service import MilestoneService
from app.modules.milestone.worker import RoadmapWorker
from app.modules.users.models import User
from app.modules.users.service import UserService

# Relative to the OpenAPI document (served under API_V1_STR), so Swagger's Authorize
# button posts to {API_V1_STR}/auth/token whatever the prefix is.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="auth/token", auto_error=False)


async def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_db(context: ContextDep) -> AsyncIterator[AsyncSession]:
    """One session per request, rolled back on any error.

    Services commit; nothing is committed here, so a request that fails half-way
    leaves the database as it was.
    """
    async with context.db.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(get_db)]


async def get_settings_dep(context: ContextDep) -> Settings:
    return context.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def client_address(request: Request) -> str:
    """The caller's address, as throttling counts it (behind a trusted proxy, the one
    it reports: FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


async def get_roadmap_worker(context: ContextDep) -> RoadmapWorker | None:
    """The roadmap worker; None while no LLM is configured (nothing is generated)."""
    return context.roadmap_worker


RoadmapWorkerDep = Annotated[RoadmapWorker | None, Depends(get_roadmap_worker)]


async def get_auth_service(session: SessionDep, context: ContextDep) -> AuthService:
    return AuthService(session, context.settings, context.hasher, context.tokens)


async def get_user_service(session: SessionDep, context: ContextDep) -> UserService:
    return UserService(session, context.hasher)


async def get_finance_service(session: SessionDep, settings: SettingsDep) -> FinanceService:
    return FinanceService.for_settings(session, settings)


async def get_milestone_service(
    session: SessionDep, settings: SettingsDep, roadmap_worker: RoadmapWorkerDep
) -> MilestoneService:
    return MilestoneService.for_settings(session, settings, roadmap_worker)


async def get_roadmap_requests(
    session: SessionDep, settings: SettingsDep, roadmap_worker: RoadmapWorkerDep
) -> RoadmapRequests:
    return RoadmapRequests.for_settings(session, settings, roadmap_worker)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
UserServiceDep = Annotated[UserService, Depends(get_user_service)]
FinanceServiceDep = Annotated[FinanceService, Depends(get_finance_service)]
MilestoneServiceDep = Annotated[MilestoneService, Depends(get_milestone_service)]
RoadmapRequestsDep = Annotated[RoadmapRequests, Depends(get_roadmap_requests)]


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
