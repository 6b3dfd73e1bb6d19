"""Achievement and leaderboard calls of the web client (#13-#17)."""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, ConfigDict

from app.api.deps import AdminUser, CurrentUser, SessionDep
from app.client_api.errors import ClientError
from app.client_api.fields import Icon, JoinedLines, PointsInput
from app.client_api.views import UnlockedAchievement, achievement_brief
from app.core.errors import Responses
from app.core.types import SingleLine
from app.modules.business.service import BusinessService
from app.modules.gamification.models import Achievement
from app.modules.gamification.service import GamificationService

router = APIRouter()

AchievementId = Annotated[int, Path(ge=1, le=2**31 - 1)]
LEADERBOARD_SIZE = 10
CODE_SUFFIX_BYTES = 3
CODE_STEM_CHARS = 60 - 1 - 2 * CODE_SUFFIX_BYTES  # code: stem + "_" + hex suffix, <= 60


class ClientAchievement(UnlockedAchievement):
    is_unlocked: bool
    unlocked_at: datetime | None = None


class ClientAchievementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, SingleLine(120)]
    description: Annotated[str, SingleLine(500, min_length=0), JoinedLines] = ""
    required_points: PointsInput
    badge_icon: Icon = None


class ClientBoardRow(BaseModel):
    rank: int
    business_id: str  # a key for the row, not the business's id
    business_name: str
    total_points: int
    level_name: str | None
    achievements_count: int
    user_name: str
    is_current_user: bool


_ADMIN: Responses = {403: {"model": ClientError, "description": "Not an admin"}}
_404: Responses = {404: {"model": ClientError, "description": "No such achievement"}}


def _view(a: Achievement, unlocked_at: datetime | None = None) -> ClientAchievement:
    return ClientAchievement(
        **achievement_brief(a).model_dump(),
        is_unlocked=unlocked_at is not None,
        unlocked_at=unlocked_at,
    )


@router.get("/gamification/achievements", response_model=list[ClientAchievement])
async def client_achievements(user: CurrentUser, session: SessionDep) -> list[ClientAchievement]:
    """Every achievement, marked unlocked where my business has it (none without one)."""
    game = GamificationService(session)
    business = await BusinessService(session).mine(user.id)
    unlocked_at: dict[int, datetime] = {}
    if business is not None:
        stats = await game.stats(business, recent=0)
        unlocked_at = {
            p.achievement.id: p.unlocked_at
            for p in stats.unlocked
            if p.achievement.id is not None and p.unlocked_at is not None
        }
    return [_view(a, unlocked_at.get(a.id or 0)) for a in await game.achievements()]


def new_code(title: str) -> str:
    """A fresh achievement code from its title: "Hemat Listrik!" -> "hemat_listrik_3fa9c1"."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^a-z0-9]+", "_", ascii_title.lower()).strip("_")[:CODE_STEM_CHARS]
    return f"{stem.rstrip('_') or 'achievement'}_{secrets.token_hex(CODE_SUFFIX_BYTES)}"


@router.post(
    "/admin/gamification/achievements",
    status_code=status.HTTP_201_CREATED,
    response_model=ClientAchievement,
    responses={**_ADMIN, 409: {"model": ClientError, "description": "Code taken"}},
)
async def client_admin_create_achievement(
    data: ClientAchievementIn, _admin: AdminUser, session: SessionDep
) -> ClientAchievement:
    """A points achievement; its code is made from the title."""
    created = await GamificationService(session).create_achievement(
        {
            "code": new_code(data.title),
            "title": data.title,
            "description": data.description,
            "required_points": data.required_points,
            "icon": data.badge_icon,
        }
    )
    return _view(created)


@router.put(
    "/admin/gamification/achievements/{achievement_id}",
    response_model=ClientAchievement,
    responses={**_ADMIN, **_404},
)
async def client_admin_replace_achievement(
    achievement_id: AchievementId,
    data: ClientAchievementIn,
    _admin: AdminUser,
    session: SessionDep,
) -> ClientAchievement:
    """Replace title, description, points and icon; the code and the rule stay. The
    client shows a rule's missing threshold as 0, so a 0 sent back keeps it missing."""
    service = GamificationService(session)
    current = await service.achievement(achievement_id)
    points: int | None = data.required_points
    if points == 0 and current.rule is not None and current.required_points is None:
        points = None
    updated = await service.update_achievement(
        achievement_id,
        {
            "title": data.title,
            "description": data.description,
            "required_points": points,
            "icon": data.badge_icon,
        },
    )
    return _view(updated)


@router.delete(
    "/admin/gamification/achievements/{achievement_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_ADMIN, **_404},
)
async def client_admin_delete_achievement(
    achievement_id: AchievementId, _admin: AdminUser, session: SessionDep
) -> Response:
    await GamificationService(session).delete_achievement(achievement_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/gamification/leaderboard", response_model=list[ClientBoardRow])
async def client_leaderboard(user: CurrentUser, session: SessionDep) -> list[ClientBoardRow]:
    """The top ten, ranked by their place on the board (so ties draw no gap), then my own
    row with its rank if it is not among them. Rows are keyed by place, not by business;
    no owner's ids or names are given out."""
    business = await BusinessService(session).mine(user.id)
    board = await GamificationService(session).leaderboard(business, LEADERBOARD_SIZE)
    rows = [(str(place), place, row) for place, row in enumerate(board.entries, start=1)]
    me = board.me
    if me is not None and not any(row.is_mine for *_, row in rows):
        rows.append(("me", me.rank, me))
    return [
        ClientBoardRow(
            rank=rank,
            business_id=key,
            business_name=row.business_name,
            total_points=row.points,
            level_name=row.level,
            achievements_count=row.achievements_count,
            user_name="",
            is_current_user=row.is_mine,
        )
        for key, rank, row in rows
    ]
