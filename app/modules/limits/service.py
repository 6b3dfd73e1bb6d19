"""Usage limits every domain shares: attempts per window, and places held at once.

- `reserve` counts attempts in sliding windows (failed logins, accounts created from an
  address, chat turns of a user): the attempt is recorded *before* it is counted, so a
  burst of parallel attempts cannot all slip under the limit.
- `take_slot` holds one of `limit` places of a key (a user's parallel streams) for a
  running stream; `SlotLease` renews it while the stream runs and frees it at the end.
  A place whose process died lapses after its time to live.

Both are kept in the database, so every worker process and host counts alike.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.background import repeating
from app.core.errors import TooManyRequestsError
from app.db.types import utcnow
from app.modules.limits.repository import RateEventRepository, SlotRepository

log = structlog.stdlib.get_logger(__name__)

# A held place lapses this long after its holder last renewed it; holders renew three
# times as often, so a live stream never loses its place to a slow renewal.
SLOT_TTL = timedelta(seconds=30)
# Keys under this namespace are not attempts but what a domain remembers for longer than
# any window (an address the owner logged in from): housekeeping leaves them to their
# owner's own `forget_remembered`.
REMEMBERED = "remembered:"
RENEW_EVERY_SECONDS = SLOT_TTL.total_seconds() / 3
_RELEASE_TIMEOUT_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Window:
    """At most `limit` attempts under `key` within `seconds`."""

    key: str
    limit: int
    seconds: float


class LimitService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.events = RateEventRepository(session)
        self.slots = SlotRepository(session)

    # --- attempts per window ------------------------------------------------------------

    async def reserve(self, *windows: Window, refusal: str) -> list[uuid.UUID]:
        """Record an attempt under each window's key now, then count: 429 (with the
        exact Retry-After) if any key is over its limit. Returns the rows, which the
        caller may `forget` when the attempt must not count (a login that succeeded).

        Every attempt that goes ahead sees in its count the rows of all attempts that
        went ahead before it, so at most `limit` go ahead per window however many arrive
        at once. A refused attempt removes its rows again, so hammering does not push
        the end of the refusal further away and Retry-After stays true.
        """
        now = utcnow()
        rows = [self.events.add(w.key, now) for w in windows]
        await self.session.commit()
        for w in windows:
            span = timedelta(seconds=w.seconds)
            recent = await self.events.recent(w.key, now - span, w.limit + 1)
            if len(recent) > w.limit:
                await self.events.delete_ids(rows)
                await self.session.commit()
                # Open again once the oldest of the last `limit` attempts leaves the window.
                wait = (recent[-1] + span - now).total_seconds()
                retry_after = min(max(1, math.ceil(wait)), math.ceil(w.seconds))
                log.warning("rate_limited", key_kind=w.key.split(":", 1)[0])
                raise TooManyRequestsError(refusal, retry_after)
        return rows

    async def count(self, key: str, seconds: float, at_most: int) -> int:
        """How many attempts `key` made in the last `seconds` (counting up to `at_most`)."""
        since = utcnow() - timedelta(seconds=seconds)
        return len(await self.events.recent(key, since, at_most))

    def record(self, key: str) -> uuid.UUID:
        """Record an event under `key` now, without counting (no commit)."""
        return self.events.add(key, utcnow())

    async def seen_since(self, key: str, seconds: float) -> bool:
        """Whether `key` has an event in the last `seconds`."""
        return await self.count(key, seconds, 1) > 0

    async def forget_remembered(self, prefix: str, before: datetime) -> int:
        """Delete remembered events (keys under REMEMBERED + `prefix`) older than
        `before` (no commit)."""
        return await self.events.delete_older_than(before, prefix=REMEMBERED + prefix)

    async def forget(self, ids: list[uuid.UUID]) -> None:
        """Uncount attempts (no commit: the caller's transaction decides)."""
        await self.events.delete_ids(ids)

    async def clear(self, key: str) -> None:
        """Uncount every attempt of `key` (no commit)."""
        await self.events.clear(key)

    # --- places held at once ------------------------------------------------------------

    async def take_slot(self, key: str, limit: int, refusal: str) -> uuid.UUID:
        """Take one of `limit` places of `key` (committed), or 429 when all are held.
        Returns the holder id to renew and release it with (`SlotLease`)."""
        now = utcnow()
        holder = uuid.uuid4()
        await self.slots.free_lapsed(key, now)
        for slot in range(limit):
            if await self.slots.take(key, slot, holder, now + SLOT_TTL):
                await self.session.commit()
                return holder
        earliest = await self.slots.earliest_expiry(key)
        await self.session.commit()
        wait = (earliest - now).total_seconds() if earliest else 1
        retry_after = min(max(1, math.ceil(wait)), math.ceil(SLOT_TTL.total_seconds()))
        log.warning("slots_full", key_kind=key.split(":", 1)[0], limit=limit)
        raise TooManyRequestsError(refusal, retry_after)

    # --- housekeeping -------------------------------------------------------------------

    async def purge(self, events_before: datetime) -> tuple[int, int]:
        """Delete attempts older than `events_before` (remembered events are their
        owners' to delete) and lapsed places; commits."""
        events = await self.events.delete_older_than(events_before, sparing=REMEMBERED)
        slots = await self.slots.delete_lapsed(utcnow())
        await self.session.commit()
        return events, slots


class SlotLease:
    """A place taken by `LimitService.take_slot`, kept while a stream runs.

    It opens its own short sessions, so a stream holds no database connection between
    renewals.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], holder: uuid.UUID) -> None:
        self.sessionmaker = sessionmaker
        self.holder = holder

    async def renew(self) -> None:
        async with self.sessionmaker() as session:
            if not await SlotRepository(session).renew(self.holder, utcnow() + SLOT_TTL):
                log.warning("slot_lapsed_while_held")  # the database was away too long
            await session.commit()

    async def release(self) -> None:
        """Free the place; never raises (an unreleased place lapses by itself)."""
        try:
            with anyio.fail_after(_RELEASE_TIMEOUT_SECONDS, shield=True):
                async with self.sessionmaker() as session:
                    await SlotRepository(session).release(self.holder)
                    await session.commit()
        except Exception:
            log.warning("slot_not_released", exc_info=True)

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Renew the place in the background while the body runs; free it after."""
        try:
            async with repeating(RENEW_EVERY_SECONDS, self.renew, name="slot-renewal"):
                yield
        finally:
            await self.release()
