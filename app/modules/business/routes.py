"""`/business`: my business profile, and the level ladder."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import CurrentUser, RoadmapWorkerDep, SessionDep
from app.modules.business.models import BusinessProfile
from app.modules.business.schemas import BusinessCreate, BusinessPublic, BusinessUpdate, LevelPublic
from app.modules.business.service import BusinessService
from app.modules.gamification.service import GamificationService

router = APIRouter(
    prefix="/business", tags=["business"], responses={401: {"description": "Not authenticated"}}
)


async def _public(service: BusinessService, business: BusinessProfile) -> BusinessPublic:
    level = await service.level_of(business)
    view = BusinessPublic.model_validate(business)
    view.level = LevelPublic.model_validate(level) if level else None
    return view


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BusinessPublic,
    responses={409: {"description": "You already have a business profile"}},
)
async def create_business(
    data: BusinessCreate, user: CurrentUser, session: SessionDep, roadmap_worker: RoadmapWorkerDep
) -> BusinessPublic:
    """Create my profile. With an AI model configured, the first roadmap (four
    milestones) is generated in the background: watch `GET /milestones/generation`."""
    service = BusinessService(session)
    return await _public(
        service, await service.create(user.id, data, roadmap_worker=roadmap_worker)
    )


@router.get(
    "/me", response_model=BusinessPublic, responses={404: {"description": "No profile yet"}}
)
async def read_my_business(user: CurrentUser, session: SessionDep) -> BusinessPublic:
    service = BusinessService(session)
    return await _public(service, await service.mine_or_404(user.id))


@router.patch(
    "/me", response_model=BusinessPublic, responses={404: {"description": "No profile yet"}}
)
async def update_my_business(
    data: BusinessUpdate, user: CurrentUser, session: SessionDep
) -> BusinessPublic:
    """Update the profile. Points, level and achievements cannot be set (422)."""
    service = BusinessService(session)
    return await _public(service, await service.update(user.id, data))


@router.get("/levels", response_model=list[LevelPublic])
async def list_levels(_user: CurrentUser, session: SessionDep) -> list[LevelPublic]:
    """The level ladder, lowest first."""
    return [LevelPublic.model_validate(lv) for lv in await GamificationService(session).levels()]
