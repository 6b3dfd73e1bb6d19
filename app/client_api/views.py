"""Shapes the web client reads in more than one place, and how ours map onto them."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.modules.business.models import BusinessProfile, BusinessStage
from app.modules.business.service import BusinessService
from app.modules.gamification.models import Achievement, Level
from app.modules.gamification.service import GamificationService
from app.modules.users.models import User, UserRole

# Our stages under the labels the client shows (its "Operational" is our growth too; the
# label the owner picked is kept and shown instead when there is one).
STAGE_LABELS = {
    BusinessStage.IDEA: "Planning",
    BusinessStage.STARTUP: "Startup",
    BusinessStage.GROWTH: "Growth",
    BusinessStage.ESTABLISHED: "Mature",
}


class ClientAddress(BaseModel):
    street: str = ""
    city: str = ""
    state: str = ""
    zip_code: str = ""
    country: str = ""


class ClientBusiness(BaseModel):
    id: uuid.UUID
    business_name: str
    business_category: str
    business_description: str
    business_stage: str
    target_market: str
    primary_goal: str
    address: ClientAddress | None
    total_points: int
    level_name: str | None
    level_icon: str | None
    created_at: datetime
    updated_at: datetime


class ClientUser(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    role: UserRole
    created_at: datetime
    business: ClientBusiness | None = None


class ClientLevel(BaseModel):
    id: int
    name: str
    required_points: int
    order: int
    icon: str | None


class UnlockedAchievement(BaseModel):
    """An achievement as the client shows it: in the list, and in the celebration after
    a transaction or a task (the first achievement it unlocked)."""

    id: int
    title: str
    description: str
    required_points: int
    badge_icon: str | None


def business_view(business: BusinessProfile, level: Level | None) -> ClientBusiness:
    address = business.address
    return ClientBusiness(
        id=business.id,
        business_name=business.name,
        business_category=business.category,
        business_description=business.description,
        business_stage=business.stage_label or STAGE_LABELS[BusinessStage(business.stage)],
        target_market=business.target_market,
        primary_goal=business.primary_goal,
        address=ClientAddress(
            street=address.get("street") or "",
            city=address.get("city") or "",
            state=address.get("province") or "",
            zip_code=address.get("postal_code") or "",
            country=address.get("country") or "",
        )
        if address
        else None,
        total_points=business.total_points,
        level_name=level.name if level else None,
        level_icon=level.icon if level else None,
        created_at=business.created_at,
        updated_at=business.updated_at,
    )


async def my_business_view(session: AsyncSession, user_id: uuid.UUID) -> ClientBusiness | None:
    service = BusinessService(session)
    business = await service.mine(user_id)
    if business is None:
        return None
    return business_view(business, await service.level_of(business))


async def user_view(session: AsyncSession, user: User) -> ClientUser:
    """The account with its business. A business that cannot be shown is left out
    (`null`): the client logs its user out on any error of `/auth/me`."""
    try:
        business = await my_business_view(session, user.id)
    except (ValidationError, KeyError, ValueError, AttributeError):
        business = None
    return ClientUser(
        id=user.id,
        email=user.email,
        name=user.name,
        role=UserRole(user.role),
        created_at=user.created_at,
        business=business,
    )


def level_view(level: Level) -> ClientLevel:
    assert level.id is not None
    return ClientLevel(
        id=level.id,
        name=level.name,
        required_points=level.required_points,
        order=level.order,
        icon=level.icon,
    )


def achievement_brief(achievement: Achievement) -> UnlockedAchievement:
    assert achievement.id is not None
    return UnlockedAchievement(
        id=achievement.id,
        title=achievement.title,
        description=achievement.description,
        required_points=achievement.required_points or 0,
        badge_icon=achievement.icon,
    )


async def first_unlocked(
    session: AsyncSession, codes: tuple[str, ...] | list[str]
) -> UnlockedAchievement | None:
    """The first of the achievements an action unlocked, as the client celebrates it."""
    for code in codes:
        achievement = await GamificationService(session).achievement_by_code(code)
        if achievement is not None:
            return achievement_brief(achievement)
    return None
