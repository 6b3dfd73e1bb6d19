"""The `users` table."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, String
from sqlmodel import Field, SQLModel

from app.db.types import UTCDateTime, utcnow


class UserRole(StrEnum):
    USER = "user"
    ADMIN = "admin"


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('user', 'admin')", name="ck_users_role"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # Stored normalised (NFC, lower case), so the unique index is case-insensitive.
    email: str = Field(sa_column=Column(String(254), nullable=False, unique=True))
    name: str = Field(sa_column=Column(String(100), nullable=False))
    hashed_password: str = Field(sa_column=Column(String(255), nullable=False))
    role: str = Field(default=UserRole.USER, sa_column=Column(String(16), nullable=False))
    is_active: bool = Field(default=True)
    # Access tokens issued before this instant are refused (password change, deactivation).
    tokens_valid_after: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )

    @property
    def is_admin(self) -> bool:
        return self.role == UserRole.ADMIN
