"""Server-side state of usage limits: counted events and held slots.

Both live in the database so that every worker process (and host) counts alike.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, Index, Integer, String, Uuid
from sqlmodel import Field, SQLModel

from app.db.types import UTCDateTime, utcnow


class RateEvent(SQLModel, table=True):
    """One counted attempt under a key (a failed login per account and address, an
    account created from an address, a chat turn of a user...): a sliding window counts
    the rows of a key newer than its window."""

    __tablename__ = "rate_events"
    __table_args__ = (Index("ix_rate_events_key_at", "key", "created_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    key: str = Field(sa_column=Column(String(300), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class UsageSlot(SQLModel, table=True):
    """One of the `limit` places of a key (a user's parallel chat streams, exports, MCP
    streams), held by a running stream that renews `expires_at` while it runs.

    The primary key (key, slot) makes taking a place a plain insert that at most one
    holder wins, on PostgreSQL and SQLite alike; a place whose holder died lapses at
    `expires_at`.
    """

    __tablename__ = "usage_slots"
    __table_args__ = (Index("ix_usage_slots_expires_at", "expires_at"),)

    key: str = Field(sa_column=Column(String(300), primary_key=True))
    slot: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    holder: uuid.UUID = Field(sa_column=Column(Uuid(), nullable=False, unique=True))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
