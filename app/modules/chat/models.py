"""Chat sessions and their messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, Integer, String, Text, Uuid
from sqlmodel import Field, SQLModel

from app.db.types import JSONDocument, UTCDateTime, utcnow

# The most tokens a message's count holds (an INTEGER column); a turn's sum is capped.
MAX_TOKEN_COUNT = 2**31 - 1


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class MessageStatus(StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"  # the stream stopped early (LLM failure, client gone)
    ERROR = "error"  # nothing usable came back; `error_code` says why


class ChatSession(SQLModel, table=True):
    __tablename__ = "chat_sessions"
    __table_args__ = (Index("ix_chat_sessions_user_updated", "user_id", "updated_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    title: str = Field(sa_column=Column(String(120), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # Set while a turn streams into this session: a second stream is refused (409) by
    # every worker, and a crashed worker's claim lapses after the turn timeout.
    streaming_since: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class ChatMessage(SQLModel, table=True):
    __tablename__ = "chat_messages"
    __table_args__ = (
        Index("ix_chat_messages_session_created", "session_id", "created_at"),
        # The admins' token usage per day reads a range of days across all sessions.
        Index("ix_chat_messages_created_at", "created_at"),
        CheckConstraint("role IN ('user', 'assistant', 'tool')", name="ck_chat_messages_role"),
        CheckConstraint(
            "status IN ('complete', 'partial', 'error')", name="ck_chat_messages_status"
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    session_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("chat_sessions.id", ondelete="CASCADE"), nullable=False)
    )
    role: str = Field(sa_column=Column(String(16), nullable=False))
    content: str = Field(default="", sa_column=Column(Text(), nullable=False))
    # assistant: the calls it made [{id, name, arguments}]; tool: {id, name, arguments, is_error}
    tool_calls: Any | None = Field(default=None, sa_column=Column(JSONDocument, nullable=True))
    status: str = Field(
        default=MessageStatus.COMPLETE, sa_column=Column(String(16), nullable=False)
    )
    error_code: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    # assistant: the tokens the turn's model responses used, summed, as the server counted
    # them (failed and partial turns included); None when the server reported no usage.
    prompt_tokens: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    completion_tokens: int | None = Field(default=None, sa_column=Column(Integer(), nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
