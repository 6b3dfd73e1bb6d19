"""The business profile: one per owner."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Integer, String, Text, Uuid
from sqlmodel import Field, SQLModel

from app.db.types import JSONDocument, UTCDateTime, utcnow


class BusinessStage(StrEnum):
    IDEA = "idea"
    STARTUP = "startup"
    GROWTH = "growth"
    ESTABLISHED = "established"


class BusinessProfile(SQLModel, table=True):
    __tablename__ = "business_profiles"
    __table_args__ = (
        CheckConstraint(
            "stage IN ('idea', 'startup', 'growth', 'established')", name="ck_business_stage"
        ),
        CheckConstraint("total_points >= 0", name="ck_business_points"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid(), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, unique=True
        )
    )
    name: str = Field(sa_column=Column(String(120), nullable=False))
    category: str = Field(sa_column=Column(String(80), nullable=False))
    description: str = Field(default="", sa_column=Column(Text(), nullable=False))
    stage: str = Field(default=BusinessStage.IDEA, sa_column=Column(String(16), nullable=False))
    # The owner's own word for the stage when it is finer than `stage` (the web client
    # offers "Operational" and "Growth", both `growth`); cleared when the stage changes.
    stage_label: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    target_market: str = Field(default="", sa_column=Column(String(500), nullable=False))
    primary_goal: str = Field(default="", sa_column=Column(String(500), nullable=False))
    address: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSONDocument, nullable=True)
    )
    icon: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    timezone: str = Field(default="Asia/Jakarta", sa_column=Column(String(40), nullable=False))
    # When `timezone` last changed: for a day after it, daily point caps count over the
    # last 24 hours instead of since local midnight, so a change cannot open a fresh cap.
    timezone_changed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    # The advisor's long-term memory about this business (facts, focus, constraints...).
    ai_context: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONDocument, nullable=False)
    )
    total_points: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False))
    level_id: int | None = Field(
        default=None,
        sa_column=Column(Integer(), ForeignKey("levels.id", ondelete="SET NULL"), nullable=True),
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
