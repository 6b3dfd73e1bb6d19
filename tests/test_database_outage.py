"""PostgreSQL going away and coming back, through a TCP proxy the test controls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import get_db
from app.main import create_app
from tests.conftest import asgi_client, make_settings
from tests.helpers.accounts import API, new_account
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    url = make_url(database_url)
    p = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await p.start()
    yield p
    await p.close()


@pytest.fixture
async def proxied_client(
    proxy: TcpProxy, database_url: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    settings = make_settings(
        url.render_as_string(hide_password=False), tmp_path, DB_CONNECT_TIMEOUT=2.0
    )
    app: FastAPI = create_app(settings)

    async def query(session: AsyncSession = Depends(get_db)) -> dict[str, int]:
        return {"one": (await session.execute(text("SELECT 1"))).scalar_one()}

    app.add_api_route("/__test__/query", query, methods=["GET"])
    async with LifespanManager(app, startup_timeout=30):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def test_ready_is_503_while_database_is_down_and_recovers(
    proxy: TcpProxy, proxied_client: httpx.AsyncClient
) -> None:
    assert (await proxied_client.get("/health/ready")).status_code == 200
    assert (await proxied_client.get("/__test__/query")).json() == {"one": 1}

    await proxy.stop()
    started = time.monotonic()
    r = await proxied_client.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["detail"]["database"].startswith("database unreachable")
    assert time.monotonic() - started < 30  # refused within its timeout, not hung
    assert (await proxied_client.get("/health")).status_code == 200  # liveness unaffected

    r = await proxied_client.get("/__test__/query")
    assert r.status_code == 503
    assert r.json() == {"detail": "The database is unavailable; please retry shortly."}
    assert r.headers["retry-after"]

    await proxy.start()  # same port: the server is back
    assert (await proxied_client.get("/health/ready")).status_code == 200
    assert (await proxied_client.get("/__test__/query")).json() == {"one": 1}


async def test_ready_is_503_when_database_hangs(
    proxy: TcpProxy, proxied_client: httpx.AsyncClient
) -> None:
    proxy.stall()
    r = await proxied_client.get("/health/ready")
    assert r.status_code == 503
    assert (
        "did not answer" in r.json()["detail"]["database"]
        or "unreachable" in r.json()["detail"]["database"]
    )
    await proxy.stop()
    await proxy.start()
    assert (await proxied_client.get("/health/ready")).status_code == 200


async def test_writes_during_an_outage_fail_cleanly_and_nothing_is_lost_or_doubled(
    proxy: TcpProxy, database_url: str, tmp_path: Path
) -> None:
    """Eight owners record transactions in a loop while PostgreSQL's connections are cut
    and come back: every answer is 201 or 503; every 201 is in the books once; no entry
    appears twice; the points match the entries exactly."""
    import asyncio

    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    settings = make_settings(
        url.render_as_string(hide_password=False),
        tmp_path,
        DB_CONNECT_TIMEOUT=2.0,
        POINTS_TRANSACTION_DAILY_CAP=10_000,
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30), asgi_client(app) as c:
        owners = []
        for n in range(8):
            owner = await new_account(c)
            r = await c.post(
                f"{API}/business",
                headers=owner.headers,
                json={"name": f"Toko {n}", "category": "Kuliner"},
            )
            assert r.status_code == 201
            owners.append(owner)
        categories = (await c.get(f"{API}/finance/categories", headers=owners[0].headers)).json()
        income = next(cat["id"] for cat in categories if cat["type"] == "income")
        answers: dict[str, int] = {}

        async def record(owner_index: int, stop: asyncio.Event) -> None:
            owner, i = owners[owner_index], 0
            while not stop.is_set():
                note = f"o{owner_index}-{i}"
                r = await c.post(
                    f"{API}/finance/transactions",
                    headers=owner.headers,
                    json={"type": "income", "amount": 1000, "category_id": income, "note": note},
                )
                answers[note] = r.status_code
                i += 1
                await asyncio.sleep(0.01)

        stop = asyncio.Event()
        writers = [asyncio.create_task(record(n, stop)) for n in range(len(owners))]
        await asyncio.sleep(0.7)
        await proxy.stop()  # every connection cut, new ones refused
        await asyncio.sleep(1.5)
        await proxy.start()
        await asyncio.sleep(2.5)  # recovered traffic
        stop.set()
        await asyncio.gather(*writers)

        codes = set(answers.values())
        assert codes <= {201, 503}, codes
        assert 503 in codes and 201 in codes  # the outage was felt, and it recovered
        for n, owner in enumerate(owners):
            rows: list[str] = []
            while len(rows) % 100 == 0:
                r = await c.get(
                    f"{API}/finance/transactions",
                    headers=owner.headers,
                    params={"limit": 100, "offset": len(rows)},
                )
                page = [t["note"] for t in r.json()["items"]]
                rows += page
                if not page:
                    break
            assert len(rows) == len(set(rows)), "an entry was written twice"
            ok = {
                note for note, code in answers.items() if note.startswith(f"o{n}-") and code == 201
            }
            assert ok <= set(rows), "an acknowledged entry was lost"
            me = (await c.get(f"{API}/gamification/me", headers=owner.headers)).json()
            assert me["total_points"] == 5 * len(rows)
