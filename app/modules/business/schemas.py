"""Request and response shapes for business profiles."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

from app.core.jsonlimits import TOO_DEEP_MESSAGE, cap_json_depth, too_deep
from app.core.types import MultiLine, SingleLine
from app.modules.business.models import BusinessStage

MAX_AI_CONTEXT_BYTES = 16_384
# Indonesia's three time zones: whole hours from UTC and no daylight saving, which the
# finance summary relies on when it buckets by local day.
TimeZone = Literal["Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura"]


def bounded_ai_context(value: dict[str, Any]) -> dict[str, Any]:
    if too_deep(value):
        raise ValueError(TOO_DEEP_MESSAGE)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise ValueError("must not contain NaN or Infinity") from None
    if len(text.encode()) > MAX_AI_CONTEXT_BYTES:
        raise ValueError(f"must be at most {MAX_AI_CONTEXT_BYTES} bytes as JSON")
    if "\\u0000" in text:
        raise ValueError("must not contain NUL characters")
    return value


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    province: Annotated[str, SingleLine(80)] | None = None
    city: Annotated[str, SingleLine(80)] | None = None
    district: Annotated[str, SingleLine(80)] | None = None
    street: Annotated[str, SingleLine(200)] | None = None
    postal_code: Annotated[str, SingleLine(20)] | None = None
    country: Annotated[str, SingleLine(80)] | None = None


AIContext = Annotated[dict[str, Any], AfterValidator(bounded_ai_context)]


class BusinessCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, SingleLine(120)]
    category: Annotated[str, SingleLine(80)]
    description: Annotated[str, MultiLine(2000)] = ""
    stage: BusinessStage = BusinessStage.IDEA
    target_market: Annotated[str, MultiLine(500)] = ""
    primary_goal: Annotated[str, MultiLine(500)] = ""
    address: Address | None = None
    icon: Annotated[str, SingleLine(500)] | None = None
    timezone: TimeZone = "Asia/Jakarta"


class BusinessUpdate(BaseModel):
    """Everything an owner may change. Points, level and achievements are not here:
    only the gamification service moves them (extra fields are a 422)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, SingleLine(120)] | None = None
    category: Annotated[str, SingleLine(80)] | None = None
    description: Annotated[str, MultiLine(2000)] | None = None
    stage: BusinessStage | None = None
    target_market: Annotated[str, MultiLine(500)] | None = None
    primary_goal: Annotated[str, MultiLine(500)] | None = None
    address: Address | None = None
    icon: Annotated[str, SingleLine(500)] | None = None
    timezone: TimeZone | None = None
    ai_context: AIContext | None = None


class LevelPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    required_points: int
    order: int
    icon: str | None


class BusinessPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    category: str
    description: str
    stage: BusinessStage
    target_market: str
    primary_goal: str
    address: dict[str, Any] | None
    icon: str | None
    timezone: str
    # Cut down to the nesting limit: a value stored before the limit existed still reads.
    ai_context: Annotated[dict[str, Any], AfterValidator(cap_json_depth)]
    total_points: int
    level: LevelPublic | None = None
    created_at: datetime
    updated_at: datetime
