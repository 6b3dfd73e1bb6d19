"""Shapes for stats, leaderboard and the admin of levels and achievements."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.types import SingleLine
from app.modules.business.schemas import LevelPublic
from app.modules.gamification.models import AchievementRule

Points = Annotated[int, Field(ge=0, le=10**12, strict=True)]
Order = Annotated[int, Field(ge=1, le=10_000, strict=True)]


class AchievementView(BaseModel):
    code: str
    title: str
    description: str
    icon: str | None
    required_points: int | None
    rule: str | None
    unlocked_at: datetime | None = None


class PointEventView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    reason: str
    amount: int
    created_at: datetime


class Stats(BaseModel):
    total_points: int
    level: LevelPublic | None
    next_level: LevelPublic | None
    points_to_next_level: int | None
    unlocked: list[AchievementView]
    locked: list[AchievementView]
    recent_events: list[PointEventView]


class AchievementStatus(AchievementView):
    unlocked: bool


class BoardEntry(BaseModel):
    """No user ids, emails or internal business ids: names, points and ranks only."""

    rank: int
    business_name: str
    points: int
    level: str | None
    achievements_count: int


class Leaderboard(BaseModel):
    entries: list[BoardEntry]
    me: BoardEntry | None
    total_businesses: int


class LevelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, SingleLine(60)]
    required_points: Points
    order: Order
    icon: Annotated[str, SingleLine(200)] | None = None


def _no_nulls(*fields: str) -> Any:
    """A `mode="before"` validator: these fields may be left out, not set to null."""

    def check(cls: type[BaseModel], data: Any) -> Any:
        if isinstance(data, dict):
            nulls = [f for f in fields if f in data and data[f] is None]
            if nulls:
                raise ValueError(f"{', '.join(nulls)} cannot be null (leave it out to keep it)")
        return data

    return model_validator(mode="before")(check)  # pydantic makes it a classmethod


class LevelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _not_null = _no_nulls("name", "required_points", "order")

    name: Annotated[str, SingleLine(60)] | None = None
    required_points: Points | None = None
    order: Order | None = None
    icon: Annotated[str, SingleLine(200)] | None = None


class AchievementCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,60}$")]
    title: Annotated[str, SingleLine(120)]
    description: Annotated[str, SingleLine(500)] = ""
    required_points: Points | None = None
    rule: AchievementRule | None = None
    icon: Annotated[str, SingleLine(200)] | None = None

    @model_validator(mode="after")
    def _has_condition(self) -> AchievementCreate:
        if self.required_points is None and self.rule is None:
            raise ValueError("give required_points, a rule, or both")
        return self


class AchievementUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _not_null = _no_nulls("title", "description")

    title: Annotated[str, SingleLine(120)] | None = None
    description: Annotated[str, SingleLine(500)] | None = None
    required_points: Points | None = None
    rule: AchievementRule | None = None
    icon: Annotated[str, SingleLine(200)] | None = None


class AchievementAdminView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    title: str
    description: str
    required_points: int | None
    rule: str | None
    icon: str | None
