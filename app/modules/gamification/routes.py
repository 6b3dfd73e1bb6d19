"""`/gamification` for owners; `/admin/levels` and `/admin/achievements` for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.api.deps import AdminUser, CurrentBusiness, CurrentUser, SessionDep
from app.modules.business.schemas import LevelPublic
from app.modules.business.service import BusinessService
from app.modules.gamification.ladder import LadderService
from app.modules.gamification.models import Level
from app.modules.gamification.schemas import (
    AchievementAdminView,
    AchievementCreate,
    AchievementStatus,
    AchievementUpdate,
    AchievementView,
    Leaderboard,
    LevelCreate,
    LevelUpdate,
    PointEventView,
    Stats,
)
from app.modules.gamification.service import AchievementProgress, GamificationService

RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]

router = APIRouter(
    prefix="/gamification",
    tags=["gamification"],
    responses={401: {"description": "Not authenticated"}},
)
admin_router = APIRouter(
    tags=["admin"],
    responses={401: {"description": "Not authenticated"}, 403: {"description": "Not an admin"}},
)


@router.get(
    "/me", response_model=Stats, responses={404: {"description": "No business profile yet"}}
)
async def my_stats(business: CurrentBusiness, session: SessionDep) -> Stats:
    """Points, level, the next level and how far it is, achievements, recent points."""
    stats = await GamificationService(session).stats(business)
    return Stats(
        total_points=stats.total_points,
        level=_level(stats.level),
        next_level=_level(stats.next_level),
        points_to_next_level=stats.points_to_next_level,
        unlocked=[_achievement(p) for p in stats.unlocked],
        locked=[_achievement(p) for p in stats.locked],
        recent_events=[PointEventView.model_validate(e) for e in stats.recent_events],
    )


@router.get("/achievements", response_model=list[AchievementStatus])
async def my_achievements(
    business: CurrentBusiness, session: SessionDep
) -> list[AchievementStatus]:
    stats = await GamificationService(session).stats(business, recent=0)
    return [
        *(AchievementStatus(**_achievement(p).model_dump(), unlocked=True) for p in stats.unlocked),
        *(AchievementStatus(**_achievement(p).model_dump(), unlocked=False) for p in stats.locked),
    ]


@router.get("/leaderboard", response_model=Leaderboard)
async def leaderboard(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Leaderboard:
    """Top businesses by points, and my own rank (even outside the top)."""
    business = await BusinessService(session).mine(user.id)
    board = await GamificationService(session).leaderboard(business, limit)
    return Leaderboard.model_validate(board, from_attributes=True)


# --- administration ---------------------------------------------------------------------


@admin_router.get("/admin/levels", response_model=list[LevelPublic])
async def admin_list_levels(_admin: AdminUser, session: SessionDep) -> list[LevelPublic]:
    return [LevelPublic.model_validate(lv) for lv in await GamificationService(session).levels()]


@admin_router.post(
    "/admin/levels",
    status_code=status.HTTP_201_CREATED,
    response_model=LevelPublic,
    responses={409: {"description": "Thresholds must increase with order"}},
)
async def admin_create_level(
    data: LevelCreate, _admin: AdminUser, session: SessionDep
) -> LevelPublic:
    return LevelPublic.model_validate(await LadderService(session).create_level(data.model_dump()))


@admin_router.patch(
    "/admin/levels/{level_id}",
    response_model=LevelPublic,
    responses={
        404: {"description": "No such level"},
        409: {"description": "Thresholds must increase with order"},
    },
)
async def admin_update_level(
    level_id: RowId, data: LevelUpdate, _admin: AdminUser, session: SessionDep
) -> LevelPublic:
    ladder = LadderService(session)
    return LevelPublic.model_validate(
        await ladder.update_level(level_id, data.model_dump(exclude_unset=True))
    )


@admin_router.delete(
    "/admin/levels/{level_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: {"description": "No such level"},
        409: {"description": "The base level cannot be deleted"},
    },
)
async def admin_delete_level(level_id: RowId, _admin: AdminUser, session: SessionDep) -> Response:
    """Delete a level; its holders move to the highest remaining level their points reach."""
    await LadderService(session).delete_level(level_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@admin_router.get("/admin/achievements", response_model=list[AchievementAdminView])
async def admin_list_achievements(
    _admin: AdminUser, session: SessionDep
) -> list[AchievementAdminView]:
    return [
        AchievementAdminView.model_validate(a)
        for a in await GamificationService(session).achievements()
    ]


@admin_router.post(
    "/admin/achievements",
    status_code=status.HTTP_201_CREATED,
    response_model=AchievementAdminView,
    responses={409: {"description": "An achievement with this code exists"}},
)
async def admin_create_achievement(
    data: AchievementCreate, _admin: AdminUser, session: SessionDep
) -> AchievementAdminView:
    return AchievementAdminView.model_validate(
        await GamificationService(session).create_achievement(data.model_dump())
    )


@admin_router.patch(
    "/admin/achievements/{achievement_id}",
    response_model=AchievementAdminView,
    responses={
        404: {"description": "No such achievement"},
        409: {"description": "Code taken, or neither required_points nor a rule left"},
    },
)
async def admin_update_achievement(
    achievement_id: RowId, data: AchievementUpdate, _admin: AdminUser, session: SessionDep
) -> AchievementAdminView:
    service = GamificationService(session)
    updated = await service.update_achievement(achievement_id, data.model_dump(exclude_unset=True))
    return AchievementAdminView.model_validate(updated)


@admin_router.delete(
    "/admin/achievements/{achievement_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such achievement"}},
)
async def admin_delete_achievement(
    achievement_id: RowId, _admin: AdminUser, session: SessionDep
) -> Response:
    await GamificationService(session).delete_achievement(achievement_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _level(level: Level | None) -> LevelPublic | None:
    return None if level is None else LevelPublic.model_validate(level)


def _achievement(progress: AchievementProgress) -> AchievementView:
    a = progress.achievement
    return AchievementView(
        code=a.code,
        title=a.title,
        description=a.description,
        icon=a.icon,
        required_points=a.required_points,
        rule=a.rule,
        unlocked_at=progress.unlocked_at,
    )
