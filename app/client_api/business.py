"""Business profile and level calls of the web client (#6-#12)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, ConfigDict, field_validator

from app.api.deps import AdminUser, CurrentBusiness, CurrentUser, RoadmapWorkerDep, SessionDep
from app.client_api.errors import ClientError
from app.client_api.fields import BlankIsNone, Icon, PointsInput
from app.client_api.views import ClientBusiness, ClientLevel, business_view, level_view
from app.core.errors import Responses
from app.core.types import MultiLine, SingleLine
from app.modules.business.models import BusinessStage
from app.modules.business.schemas import Address, BusinessCreate
from app.modules.business.service import BusinessService
from app.modules.gamification.ladder import LadderService
from app.modules.gamification.service import GamificationService

router = APIRouter()

LevelId = Annotated[int, Path(ge=1, le=2**31 - 1)]

# The client's stage labels (in any case) and our own values, as (stage, label kept).
_STAGES: dict[str, tuple[BusinessStage, str | None]] = {
    "planning": (BusinessStage.IDEA, "Planning"),
    "startup": (BusinessStage.STARTUP, "Startup"),
    "operational": (BusinessStage.GROWTH, "Operational"),
    "growth": (BusinessStage.GROWTH, "Growth"),
    "mature": (BusinessStage.ESTABLISHED, "Mature"),
    **{stage.value: (stage, None) for stage in BusinessStage},
}


class ClientAddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    street: BlankIsNone[Annotated[str, SingleLine(200)]] = None
    city: BlankIsNone[Annotated[str, SingleLine(80)]] = None
    state: BlankIsNone[Annotated[str, SingleLine(80)]] = None
    zip_code: BlankIsNone[Annotated[str, SingleLine(20)]] = None
    country: BlankIsNone[Annotated[str, SingleLine(80)]] = None


class ClientBusinessCreate(BaseModel):
    """The onboarding form. Points, level and the advisor's memory are not among its
    fields: sending them is refused (422)."""

    model_config = ConfigDict(extra="forbid")

    business_name: Annotated[str, SingleLine(120)]
    business_category: Annotated[str, SingleLine(80)]
    business_description: Annotated[str, MultiLine(2000)] = ""
    address: ClientAddressIn | None = None
    business_stage: Annotated[str, SingleLine(40)] = "planning"  # as the validator leaves it
    target_market: Annotated[str, MultiLine(500)] = ""
    primary_goal: Annotated[str, MultiLine(500)] = ""

    @field_validator("business_stage")
    @classmethod
    def _known_stage(cls, value: str) -> str:
        if value.lower() not in _STAGES:
            raise ValueError("must be one of Planning, Startup, Operational, Growth, Mature")
        return value.lower()


class ClientLevelIn(BaseModel):
    """A level as the admin's form sends it: no order (it follows from the points)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, SingleLine(60)]
    required_points: PointsInput
    icon: Icon = None


_404: Responses = {404: {"model": ClientError, "description": "No business profile yet"}}
_ADMIN: Responses = {403: {"model": ClientError, "description": "Not an admin"}}


@router.get("/business/profile", response_model=ClientBusiness, responses=_404)
async def client_business_profile(business: CurrentBusiness, session: SessionDep) -> ClientBusiness:
    """My profile; 404 sends the client to onboarding."""
    return business_view(business, await BusinessService(session).level_of(business))


@router.post(
    "/business/profile",
    status_code=status.HTTP_201_CREATED,
    response_model=ClientBusiness,
    responses={409: {"model": ClientError, "description": "You already have a profile"}},
)
async def client_create_business_profile(
    data: ClientBusinessCreate,
    user: CurrentUser,
    session: SessionDep,
    roadmap_worker: RoadmapWorkerDep,
) -> ClientBusiness:
    """Onboarding: the profile at once (201); the first roadmap is generated in the
    background and appears in `GET /milestones/`."""
    stage, label = _STAGES[data.business_stage]
    address = data.address
    create = BusinessCreate(
        name=data.business_name,
        category=data.business_category,
        description=data.business_description,
        stage=stage,
        target_market=data.target_market,
        primary_goal=data.primary_goal,
        address=Address(
            street=address.street,
            city=address.city,
            province=address.state,
            postal_code=address.zip_code,
            country=address.country,
        )
        if address
        else None,
    )
    service = BusinessService(session)
    business = await service.create(
        user.id, create, roadmap_worker=roadmap_worker, stage_label=label
    )
    return business_view(business, await service.level_of(business))


async def _ladder(session: SessionDep) -> list[ClientLevel]:
    return [level_view(lv) for lv in await GamificationService(session).levels()]


@router.get("/business/levels", response_model=list[ClientLevel])
async def client_levels(_user: CurrentUser, session: SessionDep) -> list[ClientLevel]:
    return await _ladder(session)


@router.get("/admin/business/levels", response_model=list[ClientLevel], responses=_ADMIN)
async def client_admin_levels(_admin: AdminUser, session: SessionDep) -> list[ClientLevel]:
    return await _ladder(session)


_LADDER_ERRORS: Responses = {
    **_ADMIN,
    409: {"model": ClientError, "description": "Name or threshold taken, or no base level"},
}


@router.post(
    "/admin/business/levels",
    status_code=status.HTTP_201_CREATED,
    response_model=ClientLevel,
    responses=_LADDER_ERRORS,
)
async def client_admin_create_level(
    data: ClientLevelIn, _admin: AdminUser, session: SessionDep
) -> ClientLevel:
    """A new level, ordered by its points among the others."""
    return level_view(await LadderService(session).place_level(None, data.model_dump()))


@router.put(
    "/admin/business/levels/{level_id}",
    response_model=ClientLevel,
    responses={**_LADDER_ERRORS, 404: {"model": ClientError, "description": "No such level"}},
)
async def client_admin_replace_level(
    level_id: LevelId, data: ClientLevelIn, _admin: AdminUser, session: SessionDep
) -> ClientLevel:
    """Replace the level whole; it moves in the ladder when its points do."""
    ladder = LadderService(session)
    return level_view(await ladder.place_level(level_id, data.model_dump()))


@router.delete(
    "/admin/business/levels/{level_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **_ADMIN,
        404: {"model": ClientError, "description": "No such level"},
        409: {"model": ClientError, "description": "The base level cannot be deleted"},
    },
)
async def client_admin_delete_level(
    level_id: LevelId, _admin: AdminUser, session: SessionDep
) -> Response:
    await LadderService(session).delete_level(level_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
