"""Levels, achievements, the points ledger and unlocked achievements."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Uuid,
)
from sqlmodel import Field, SQLModel

from app.db.types import UTCDateTime, utcnow


class AchievementRule(StrEnum):
    """Achievements unlocked by what the owner did rather than by a points total."""

    FIRST_TRANSACTION = "first_transaction"
    TRANSACTIONS_50 = "transactions_50"
    FIRST_MILESTONE_COMPLETED = "first_milestone_completed"


class Level(SQLModel, table=True):
    __tablename__ = "levels"

    id: int | None = Field(
        default=None, sa_column=Column(Integer(), primary_key=True, autoincrement=True)
    )
    name: str = Field(sa_column=Column(String(60), nullable=False, unique=True))
    required_points: int = Field(sa_column=Column(BigInteger(), nullable=False, unique=True))
    order: int = Field(sa_column=Column("sort_order", Integer(), nullable=False, unique=True))
    icon: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))


class Achievement(SQLModel, table=True):
    __tablename__ = "achievements"
    __table_args__ = (
        CheckConstraint(
            "(required_points IS NOT NULL) OR (rule IS NOT NULL)", name="ck_achievement_condition"
        ),
    )

    id: int | None = Field(
        default=None, sa_column=Column(Integer(), primary_key=True, autoincrement=True)
    )
    code: str = Field(sa_column=Column(String(60), nullable=False, unique=True))
    title: str = Field(sa_column=Column(String(120), nullable=False))
    description: str = Field(default="", sa_column=Column(String(500), nullable=False))
    required_points: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    rule: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    icon: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))


class PointEvent(SQLModel, table=True):
    """The points ledger: every change of a business's total, with its reason."""

    __tablename__ = "point_events"
    __table_args__ = (
        Index("ix_point_events_business_created", "business_id", "created_at"),
        Index("ix_point_events_ref", "ref_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    business_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid(), ForeignKey("business_profiles.id", ondelete="CASCADE"), nullable=False
        )
    )
    reason: str = Field(sa_column=Column(String(40), nullable=False))
    amount: int = Field(sa_column=Column(BigInteger(), nullable=False))
    ref_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid(), nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class BusinessAchievement(SQLModel, table=True):
    __tablename__ = "business_achievements"

    business_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid(), ForeignKey("business_profiles.id", ondelete="CASCADE"), primary_key=True
        )
    )
    achievement_id: int = Field(
        sa_column=Column(
            Integer(), ForeignKey("achievements.id", ondelete="CASCADE"), primary_key=True
        )
    )
    unlocked_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
