"""Queries on rate events and usage slots."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.helpers import rows_touched, table_of
from app.modules.limits.models import RateEvent, UsageSlot


class RateEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, key: str, at: datetime) -> uuid.UUID:
        row = RateEvent(key=key, created_at=at)
        self.session.add(row)
        return row.id

    async def delete_ids(self, ids: list[uuid.UUID]) -> None:
        if ids:
            await self.session.execute(delete(RateEvent).where(col(RateEvent.id).in_(ids)))

    async def recent(self, key: str, since: datetime, limit: int) -> list[datetime]:
        """Times of the newest `limit` events of `key` since `since`, newest first."""
        rows = await self.session.execute(
            select(col(RateEvent.created_at))
            .where(col(RateEvent.key) == key, col(RateEvent.created_at) >= since)
            .order_by(col(RateEvent.created_at).desc())
            .limit(limit)
        )
        return list(rows.scalars())

    async def clear(self, key: str) -> None:
        await self.session.execute(delete(RateEvent).where(col(RateEvent.key) == key))

    async def delete_older_than(
        self, before: datetime, *, prefix: str | None = None, sparing: str | None = None
    ) -> int:
        """Delete events older than `before`: only the keys starting with `prefix`, or
        all but those starting with `sparing`."""
        query = delete(RateEvent).where(col(RateEvent.created_at) < before)
        if prefix is not None:
            query = query.where(col(RateEvent.key).startswith(prefix, autoescape=True))
        if sparing is not None:
            query = query.where(~col(RateEvent.key).startswith(sparing, autoescape=True))
        result = await self.session.execute(query)
        return rows_touched(result)


class SlotRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def free_lapsed(self, key: str, now: datetime) -> None:
        await self.session.execute(
            delete(UsageSlot).where(col(UsageSlot.key) == key, col(UsageSlot.expires_at) <= now)
        )

    async def take(self, key: str, slot: int, holder: uuid.UUID, expires_at: datetime) -> bool:
        """Insert the place unless it is held: True if this holder got it."""
        table = table_of(UsageSlot)
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        result = await self.session.execute(
            insert.values(
                key=key, slot=slot, holder=holder, expires_at=expires_at
            ).on_conflict_do_nothing(index_elements=["key", "slot"])
        )
        return rows_touched(result) == 1

    async def earliest_expiry(self, key: str) -> datetime | None:
        return await self.session.scalar(
            select(func.min(col(UsageSlot.expires_at))).where(col(UsageSlot.key) == key)
        )

    async def renew(self, holder: uuid.UUID, expires_at: datetime) -> bool:
        """Move the holder's expiry on; False if its place lapsed and was freed."""
        result = await self.session.execute(
            update(UsageSlot).where(col(UsageSlot.holder) == holder).values(expires_at=expires_at)
        )
        return rows_touched(result) == 1

    async def release(self, holder: uuid.UUID) -> None:
        await self.session.execute(delete(UsageSlot).where(col(UsageSlot.holder) == holder))

    async def delete_lapsed(self, now: datetime) -> int:
        result = await self.session.execute(
            delete(UsageSlot).where(col(UsageSlot.expires_at) <= now)
        )
        return rows_touched(result)
