"""PostgreSQL going away and coming back, through a TCP proxy the test controls."""

from __future__ import annotations

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

from app.db.session import get_db
from app.main import create_app
from tests.conftest import make_settings
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres_only


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
    assert time.monotonic() - started < 10  # refused, not hung
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
