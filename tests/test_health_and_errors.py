"""The app over ASGI: probes, docs, and error bodies that are always JSON `{"detail"}`."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import BaseModel

from app.main import create_app
from tests.conftest import ADMIN_PASSWORD, asgi_client, make_settings
from tests.helpers.accounts import bearer, login, new_account

DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/api/v1/openapi.json")


async def test_liveness_and_readiness(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await client.get("/health/ready")
    assert r.status_code == 200 and r.json()["database"] == "ok"


async def test_readiness_details_are_for_admins_only(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A load balancer sees the status and the database; only an admin's token also gets
    the MCP servers' names and states."""
    plain = {"status": "ready", "database": "ok"}
    user = await new_account(client)
    for headers in ({}, user.headers, bearer("not-a-jwt"), {"Authorization": "Basic YTpi"}):
        r = await client.get("/health/ready", headers=headers)
        assert r.status_code == 200 and r.json() == plain, headers
    r = await login(client, app.state.context.settings.FIRST_ADMIN_EMAIL, ADMIN_PASSWORD)
    admin = bearer(r.json()["access_token"])
    r = await client.get("/health/ready", headers=admin)
    assert r.status_code == 200 and r.json() == {**plain, "mcp_servers": {}}


async def test_docs_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    for path in DOCS_PATHS:
        assert (await client.get(path)).status_code == 200, path
    spec = (await client.get("/api/v1/openapi.json")).json()
    assert spec["info"]["title"] == "Telaten Backend"
    assert "/health/ready" in spec["paths"]


async def test_docs_can_be_turned_off(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path / "data", DOCS_ENABLED=False))
    async with LifespanManager(app, startup_timeout=60), asgi_client(app) as c:
        for path in DOCS_PATHS:
            r = await c.get(path)
            assert r.status_code == 404 and r.json()["detail"], path
        assert (await c.get("/health/ready")).status_code == 200


@pytest.mark.postgres_only
async def test_production_hides_the_docs_and_the_readiness_details(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path / "data", ENV="production", SECRET_KEY="p" * 48)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60), asgi_client(app) as c:
        for path in DOCS_PATHS:
            r = await c.get(path)
            assert r.status_code == 404 and r.json()["detail"], path
        r = await c.get("/health/ready")
        assert r.status_code == 200 and r.json() == {"status": "ready", "database": "ok"}
        r = await login(c, settings.FIRST_ADMIN_EMAIL, ADMIN_PASSWORD)
        r = await c.get("/health/ready", headers=bearer(r.json()["access_token"]))
        assert r.status_code == 200 and r.json()["mcp_servers"] == {}


async def test_request_id_is_echoed_or_created(client: httpx.AsyncClient) -> None:
    r = await client.get("/health", headers={"X-Request-ID": "abc"})
    assert r.headers["x-request-id"] == "abc"
    generated = (await client.get("/health")).headers["x-request-id"]
    assert len(generated) == 32
    # A header that could forge log lines is replaced, not trusted.
    forged = (await client.get("/health", headers={"X-Request-ID": "a b\tc" * 40})).headers
    assert forged["x-request-id"] != "a b\tc" * 40 and len(forged["x-request-id"]) == 32


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("GET", "/api/v1/nope", 404), ("POST", "/health", 405)],
)
async def test_routing_errors_are_json(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    r = await client.request(method, path)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert isinstance(r.json()["detail"], str)


class _Echo(BaseModel):
    password: str
    count: int


@pytest.fixture(scope="module")
def probe_routes(app: FastAPI) -> None:
    """Routes that exist only in this test module, added to the running app."""

    async def echo(body: _Echo) -> dict[str, int]:
        return {"count": body.count}

    async def boom() -> None:
        raise RuntimeError("internal detail: /srv/secret/path")

    app.add_api_route("/__test__/echo", echo, methods=["POST"])
    app.add_api_route("/__test__/boom", boom, methods=["GET"])


@pytest.mark.usefixtures("probe_routes")
async def test_validation_error_does_not_echo_input(client: httpx.AsyncClient) -> None:
    r = await client.post("/__test__/echo", json={"password": "hunter2-secret", "count": "many"})
    assert r.status_code == 422
    assert "hunter2-secret" not in r.text and "many" not in r.text
    assert r.json()["detail"][0]["loc"] == ["body", "count"]


@pytest.mark.usefixtures("probe_routes")
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 422),
        (b"\xff\xfe\x00", 400),  # not decodable as text at all
        (b"[]", 422),
        (b"", 422),
    ],
)
async def test_malformed_bodies_are_client_errors(
    client: httpx.AsyncClient, body: bytes, status: int
) -> None:
    r = await client.post(
        "/__test__/echo", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == status, r.text
    assert "detail" in r.json()


async def test_every_operation_with_a_body_declares_400_and_413(client: httpx.AsyncClient) -> None:
    """What the body handling answers before any route runs (see the two tests around
    this one) is in the schema of every operation that reads a body (tests/test_fuzz.py
    found undeclared 400s)."""
    spec = (await client.get("/api/v1/openapi.json")).json()
    with_body = [
        (method, path, operation["responses"])
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]
    assert len(with_body) > 10
    for method, path, responses in with_body:
        assert {"400", "413"} <= set(responses), (method, path)


@pytest.mark.usefixtures("probe_routes")
async def test_oversized_body_is_413_json(client: httpx.AsyncClient) -> None:
    big = json.dumps({"password": "x" * 2_000_000, "count": 1})
    r = await client.post(
        "/__test__/echo", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert "detail" in r.json()


@pytest.mark.usefixtures("probe_routes")
async def test_unexpected_exception_is_500_with_request_id_only(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="app.errors"):
        r = await client.get("/__test__/boom", headers={"X-Request-ID": "req-500"})
    assert r.status_code == 500
    assert r.json() == {"detail": "Internal server error", "request_id": "req-500"}
    assert r.headers["x-request-id"] == "req-500"
    assert "secret" not in r.text and "Traceback" not in r.text
    logged = [rec for rec in caplog.records if rec.name == "app.errors"]
    assert logged and logged[0].exc_info is not None
    assert "internal detail" in str(logged[0].exc_info[1])


@pytest.mark.usefixtures("probe_routes")
async def test_oversized_chunked_body_is_413_json(client: httpx.AsyncClient) -> None:
    async def chunks():  # no Content-Length: the limit is enforced while reading
        yield b'{"password": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'", "count": 1}'

    r = await client.post(
        "/__test__/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]


# --- contention is "busy", not "database unavailable" --------------------------------


def _contention_app(database_url: str) -> tuple[FastAPI, Any]:
    """A bare app with the service's error handlers and routes that lose to each other
    on a real database: a lock held too long, a deadlock, a statement timeout."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.core.errors import install_exception_handlers

    sqlite = database_url.startswith("sqlite")
    engine = create_async_engine(
        database_url, connect_args={"timeout": 0.2} if sqlite else {}, pool_size=5
    )
    bare = FastAPI()
    install_exception_handlers(bare)
    turns = asyncio.Barrier(2)

    @bare.post("/hold")
    async def hold() -> dict[str, str]:  # holds the write lock (SQLite) for a while
        async with engine.connect() as conn:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await conn.execute(text("INSERT INTO contention (id) VALUES (1)"))
            await asyncio.sleep(2)
            await conn.rollback()
        return {}

    @bare.post("/write")
    async def write() -> dict[str, str]:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO contention (id) VALUES (2)"))
        return {}

    @bare.post("/deadlock/{first}/{second}")
    async def deadlock(first: int, second: int) -> dict[str, str]:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE contention SET n = n + 1 WHERE id = :i"), {"i": first})
            await turns.wait()  # both hold their first row now
            await conn.execute(text("UPDATE contention SET n = n + 1 WHERE id = :i"), {"i": second})
        return {}

    @bare.get("/slow")
    async def slow() -> dict[str, str]:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL statement_timeout = 100"))
            await conn.execute(text("SELECT pg_sleep(5)"))
        return {}

    return bare, engine


async def _make_contention_table(engine: Any, rows: int) -> None:
    from sqlalchemy import text

    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS contention"))
        await conn.execute(text("CREATE TABLE contention (id INTEGER PRIMARY KEY, n INTEGER)"))
        for i in range(10, 10 + rows):
            await conn.execute(text("INSERT INTO contention (id, n) VALUES (:i, 0)"), {"i": i})


def _busy(r: httpx.Response) -> bool:
    return (
        r.status_code == 503
        and "busy" in r.json()["detail"]
        and "unavailable" not in r.json()["detail"]
        and r.headers["Retry-After"].isdigit()
    )


@pytest.mark.slow
async def test_a_write_that_waits_out_the_sqlite_lock_is_busy(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    bare, engine = _contention_app(database_url)
    try:
        await _make_contention_table(engine, 0)
        async with asgi_client(bare) as c:
            holding = asyncio.create_task(c.post("/hold"))
            await asyncio.sleep(0.5)
            r = await c.post("/write")
            assert _busy(r), r.text
            assert (await holding).status_code == 200
    finally:
        await engine.dispose()


@pytest.mark.postgres_only
async def test_deadlocks_and_statement_timeouts_are_busy(database_url: str) -> None:
    bare, engine = _contention_app(database_url)
    try:
        await _make_contention_table(engine, 2)
        async with asgi_client(bare) as c:
            a, b = await asyncio.gather(c.post("/deadlock/10/11"), c.post("/deadlock/11/10"))
            statuses = sorted([a.status_code, b.status_code])
            assert statuses == [200, 503], (a.text, b.text)
            assert _busy(a if a.status_code == 503 else b)
            r = await c.get("/slow")
            assert _busy(r), r.text
            assert "pg_sleep" not in r.text and "SQL" not in r.text
    finally:
        await engine.dispose()
