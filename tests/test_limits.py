"""Usage limits shared by every domain: attempts per window and places held at once,
counted in the database so that parallel requests and several processes agree."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Connection, select, text, update

from app.core.errors import TooManyRequestsError
from app.db.migrate import current_revision, head_revision
from app.db.types import utcnow
from app.modules.limits.models import UsageSlot
from app.modules.limits.service import SLOT_TTL, LimitService, SlotLease, Window
from tests.helpers.migrations import fresh_database, migrate, rows, stored_ids, stored_time


async def _take(app: FastAPI, key: str, limit: int) -> uuid.UUID | TooManyRequestsError:
    async with app.state.context.db.sessionmaker() as session:
        try:
            return await LimitService(session).take_slot(key, limit, "All places are taken")
        except TooManyRequestsError as exc:
            return exc


async def _reserve(app: FastAPI, window: Window) -> list[uuid.UUID] | TooManyRequestsError:
    async with app.state.context.db.sessionmaker() as session:
        try:
            return await LimitService(session).reserve(window, refusal="Too many")
        except TooManyRequestsError as exc:
            return exc


async def test_parallel_takers_get_exactly_the_places_there_are(app: FastAPI) -> None:
    key = f"test:{uuid.uuid4()}"
    results = await asyncio.gather(*(_take(app, key, 3) for _ in range(20)))
    holders = [r for r in results if isinstance(r, uuid.UUID)]
    refusals = [r for r in results if isinstance(r, TooManyRequestsError)]
    assert len(holders) == 3 and len(set(holders)) == 3
    assert len(refusals) == 17
    for refusal in refusals:
        assert refusal.status_code == 429
        assert 1 <= int(refusal.headers["Retry-After"]) <= SLOT_TTL.total_seconds()

    # A released place is free at once; the others stay held.
    await SlotLease(app.state.context.db.sessionmaker, holders[0]).release()
    again = await _take(app, key, 3)
    assert isinstance(again, uuid.UUID)
    assert isinstance(await _take(app, key, 3), TooManyRequestsError)


async def test_a_place_whose_holder_died_lapses_and_a_renewed_one_does_not(app: FastAPI) -> None:
    key = f"test:{uuid.uuid4()}"
    dead, alive = await _take(app, key, 2), await _take(app, key, 2)
    assert isinstance(dead, uuid.UUID) and isinstance(alive, uuid.UUID)
    # Both places' time runs out; only one holder is still there to renew its place.
    async with app.state.context.db.sessionmaker() as session:
        await session.execute(
            update(UsageSlot)
            .where(UsageSlot.key == key)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    await SlotLease(app.state.context.db.sessionmaker, alive).renew()
    newcomer = await _take(app, key, 2)
    assert isinstance(newcomer, uuid.UUID)  # took the dead holder's place
    assert isinstance(await _take(app, key, 2), TooManyRequestsError)
    async with app.state.context.db.sessionmaker() as session:
        holders = set(
            (await session.execute(select(UsageSlot.holder).where(UsageSlot.key == key))).scalars()
        )
    assert holders == {alive, newcomer}


async def test_a_lease_renews_while_held_and_frees_its_place_after(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.modules.limits.service as limits

    monkeypatch.setattr(limits, "RENEW_EVERY_SECONDS", 0.05)
    key = f"test:{uuid.uuid4()}"
    holder = await _take(app, key, 1)
    assert isinstance(holder, uuid.UUID)

    async def expiry() -> Any:
        async with app.state.context.db.sessionmaker() as session:
            return await session.scalar(
                select(UsageSlot.expires_at).where(UsageSlot.holder == holder)
            )

    first = await expiry()
    async with SlotLease(app.state.context.db.sessionmaker, holder).held():
        for _ in range(200):  # renewed in the background while the body runs
            await asyncio.sleep(0.05)
            if await expiry() > first:
                break
        assert await expiry() > first
    assert await expiry() is None  # released
    assert isinstance(await _take(app, key, 1), uuid.UUID)


async def test_a_burst_of_attempts_never_passes_more_than_the_limit(app: FastAPI) -> None:
    """Each attempt counts every row it can see, its own included, so of any two that
    race the later counter sees both: a burst never lets more than the limit through
    (it may let fewer, when attempts that will be refused are still counted). One at a
    time afterwards, exactly the limit passes."""
    window = Window(f"test:{uuid.uuid4()}", 5, 3600)
    results = await asyncio.gather(*(_reserve(app, window) for _ in range(25)))
    passed = [r for r in results if isinstance(r, list)]
    refused = [r for r in results if isinstance(r, TooManyRequestsError)]
    assert len(passed) <= 5 and len(passed) + len(refused) == 25
    # The refused attempts left nothing behind: the window holds the ones that passed.
    async with app.state.context.db.sessionmaker() as session:
        assert await LimitService(session).count(window.key, window.seconds, 100) == len(passed)
    for _ in range(5 - len(passed)):
        passed.append(await _reserve(app, window))
    assert all(isinstance(r, list) for r in passed)
    assert isinstance(await _reserve(app, window), TooManyRequestsError)
    # Forgotten attempts free their place in the window.
    async with app.state.context.db.sessionmaker() as session:
        await LimitService(session).forget(passed[0])
        await session.commit()
    assert isinstance(await _reserve(app, window), list)
    refusal = await _reserve(app, window)
    assert isinstance(refusal, TooManyRequestsError)
    assert 3500 <= int(refusal.headers["Retry-After"]) <= 3600


# --- migration 0007 ---------------------------------------------------------------------


def _seed_failures(conn: Connection) -> None:
    at = stored_time(conn, utcnow())
    for key, ident in zip(("account:abc", "client:127.0.0.1"), stored_ids(conn, 2), strict=True):
        conn.execute(
            text("INSERT INTO login_failures (id, key, created_at) VALUES (:id, :key, :at)"),
            {"id": ident, "key": key, "at": at},
        )


async def test_0007_keeps_the_counted_attempts_both_ways(tmp_path: Path) -> None:
    async with fresh_database(tmp_path, "mig7") as db:
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, "0006_web_client")
            await conn.run_sync(_seed_failures)
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, "head")
            assert await conn.run_sync(current_revision) == head_revision()
            keys = await conn.run_sync(rows, "SELECT key FROM rate_events ORDER BY key")
            assert keys == [("account:abc",), ("client:127.0.0.1",)]
            assert await conn.run_sync(rows, "SELECT * FROM usage_slots") == []
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, "0006_web_client", True)
            keys = await conn.run_sync(rows, "SELECT key FROM login_failures ORDER BY key")
            assert keys == [("account:abc",), ("client:127.0.0.1",)]
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, "head")
            assert await conn.run_sync(current_revision) == head_revision()
