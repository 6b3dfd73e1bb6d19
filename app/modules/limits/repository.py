"""Queries on rate events and usage slots."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

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
            await self.session.execute(delete(RateEvent).where(RateEvent.id.in_(ids)))  # type: ignore[attr-defined]

    async def recent(self, key: str, since: datetime, limit: int) -> list[datetime]:
        """Times of the newest `limit` events of `key` since `since`, newest first."""
        rows = await self.session.execute(
            select(RateEvent.created_at)
            .where(RateEvent.key == key, RateEvent.created_at >= since)
            .order_by(RateEvent.created_at.desc())  # type: ignore[attr-defined]
            .limit(limit)
        )
        return list(rows.scalars())

    async def clear(self, key: str) -> None:
        await self.session.execute(delete(RateEvent).where(RateEvent.key == key))

    async def delete_older_than(
        self, before: datetime, *, prefix: str | None = None, sparing: str | None = None
    ) -> int:
        """Delete events older than `before`: only the keys starting with `prefix`, or
        all but those starting with `sparing`."""
        query = delete(RateEvent).where(RateEvent.created_at < before)
        if prefix is not None:
            query = query.where(RateEvent.key.startswith(prefix, autoescape=True))  # type: ignore[attr-defined]
        if sparing is not None:
            query = query.where(~RateEvent.key.startswith(sparing, autoescape=True))  # type: ignore[attr-defined]
        result = await self.session.execute(query)
        return result.rowcount or 0  # type: ignore[attr-defined]


class SlotRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def free_lapsed(self, key: str, now: datetime) -> None:
        await self.session.execute(
            delete(UsageSlot).where(UsageSlot.key == key, UsageSlot.expires_at <= now)  # type: ignore[arg-type]
        )

    async def take(self, key: str, slot: int, holder: uuid.UUID, expires_at: datetime) -> bool:
        """Insert the place unless it is held: True if this holder got it."""
        table = UsageSlot.__table__  # type: ignore[attr-defined]
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        result = await self.session.execute(
            insert.values(
                key=key, slot=slot, holder=holder, expires_at=expires_at
            ).on_conflict_do_nothing(index_elements=["key", "slot"])
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def earliest_expiry(self, key: str) -> datetime | None:
        return await self.session.scalar(
            select(func.min(UsageSlot.expires_at)).where(UsageSlot.key == key)
        )

    async def renew(self, holder: uuid.UUID, expires_at: datetime) -> bool:
        """Move the holder's expiry on; False if its place lapsed and was freed."""
        result = await self.session.execute(
            update(UsageSlot).where(UsageSlot.holder == holder).values(expires_at=expires_at)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def release(self, holder: uuid.UUID) -> None:
        await self.session.execute(delete(UsageSlot).where(UsageSlot.holder == holder))

    async def delete_lapsed(self, now: datetime) -> int:
        result = await self.session.execute(
            delete(UsageSlot).where(UsageSlot.expires_at <= now)  # type: ignore[arg-type]
        )
        return result.rowcount or 0  # type: ignore[attr-defined]
