"""Request and response shapes for chat."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.jsonlimits import MAX_JSON_DEPTH, cap_json_depth
from app.core.types import MultiLine, SingleLine
from app.modules.chat.models import MessageRole, MessageStatus
from app.modules.chat.service import MAX_USAGE_DAYS

MAX_MESSAGE_CHARS = 8000

MessageText = Annotated[str, MultiLine(MAX_MESSAGE_CHARS, min_length=1)]
SessionTitle = Annotated[str, SingleLine(120)]


def _readable_tool_calls(value: Any) -> Any:
    return cap_json_depth(value, MAX_JSON_DEPTH + 2)


class ChatStreamRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: uuid.UUID | None = None
    content: MessageText


class SessionRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: SessionTitle


class SessionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime


class SessionPage(BaseModel):
    items: list[SessionPublic]
    total: int
    limit: int
    offset: int


class MessagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    session_id: uuid.UUID
    role: MessageRole
    content: str
    # Arguments are refused past MAX_JSON_DEPTH on the way in; a row stored before that
    # rule is cut down when read (+2: the list of calls and the call around them).
    tool_calls: Annotated[Any | None, AfterValidator(_readable_tool_calls)]
    status: MessageStatus
    error_code: str | None
    # assistant: the tokens the turn used; null when the model's server reported none
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    created_at: datetime


class MessagePage(BaseModel):
    items: list[MessagePublic]
    total: int
    limit: int
    offset: int


# --- token usage (admins) ---------------------------------------------------------------

UsageDays = Annotated[
    int,
    Field(
        ge=1, le=MAX_USAGE_DAYS, description=f"UTC days back, today included (1-{MAX_USAGE_DAYS})"
    ),
]


class UsageCounts(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    turns: int = Field(description="Chat turns whose model server reported token usage")


class DailyUsagePublic(BaseModel):
    """One user's tokens on one UTC day."""

    model_config = ConfigDict(from_attributes=True)

    date: dt.date = Field(description="UTC day")
    user_id: uuid.UUID
    email: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    turns: int = Field(description="Chat turns whose model server reported token usage")


class UsageReportPublic(BaseModel):
    """Tokens per UTC day and user (newest day first, then the biggest spender), a page
    of them, and the sums over the whole range."""

    model_config = ConfigDict(from_attributes=True)

    start: dt.date = Field(description="First UTC day included")
    end: dt.date = Field(description="Last UTC day included (today)")
    totals: UsageCounts
    items: list[DailyUsagePublic]
    total: int = Field(description="Rows (user-days) in the range")
    limit: int
    offset: int
