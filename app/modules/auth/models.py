"""Server-side state of authentication: refresh-token families (the throttle counts
of logins live in app/modules/limits)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Integer, Uuid
from sqlmodel import Field, SQLModel

from app.db.types import UTCDateTime, utcnow


class RefreshToken(SQLModel, table=True):
    """One issued refresh token. Tokens rotated from one login share a `family_id`.

    Presenting a token that was already rotated (`used_at` set) means it was copied:
    the whole family is revoked.
    """

    __tablename__ = "refresh_tokens"

    jti: uuid.UUID = Field(primary_key=True)
    family_id: uuid.UUID = Field(index=True)
    user_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid(), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    # Renewals after its rotation, within a reuse grace window (see AuthService.refresh).
    reissues: int = Field(
        default=0, sa_column=Column(Integer(), nullable=False, server_default="0")
    )
