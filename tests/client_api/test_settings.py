"""The web client's API as the settings shape it: its prefix (or none), the cookie's
SameSite, and what a misconfiguration is told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from app.main import create_app
from tests.conftest import asgi_client, make_settings
from tests.helpers.accounts import DEFAULT_PASSWORD, unique_email


@asynccontextmanager
async def app_client(
    database_url: str, data: Path, **settings: object
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url, data, **settings))
    async with LifespanManager(app, startup_timeout=60), asgi_client(app) as client:
        yield client


async def sign_up(client: httpx.AsyncClient, prefix: str) -> httpx.Response:
    email = unique_email()
    body = {"name": "Bu Dewi", "email": email, "password": DEFAULT_PASSWORD}
    assert (await client.post(f"{prefix}/auth/register", json=body)).status_code == 201
    return await client.post(
        f"{prefix}/auth/login", json={"email": email, "password": DEFAULT_PASSWORD}
    )


async def test_samesite_none_makes_the_cookie_secure(database_url: str, tmp_path: Path) -> None:
    async with app_client(database_url, tmp_path, REFRESH_COOKIE_SAMESITE="None") as client:
        r = await sign_up(client, "/client/v1")
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"]
        assert "SameSite=none" in cookie and "Secure" in cookie and "Path=/client/v1/auth" in cookie


async def test_another_prefix_and_none(database_url: str, tmp_path: Path) -> None:
    async with app_client(database_url, tmp_path, CLIENT_API_PREFIX="/web") as client:
        r = await sign_up(client, "/web")
        assert r.status_code == 200 and "Path=/web/auth" in r.headers["set-cookie"]
        assert (await client.get("/client/v1/auth/me")).status_code == 404
    async with app_client(database_url, tmp_path, CLIENT_API_PREFIX="") as client:
        r = await client.post("/client/v1/auth/login", json={"email": "a@b.c", "password": "x"})
        assert r.status_code == 404 and "message" not in r.json()  # the adapter is off
        spec = (await client.get("/api/v1/openapi.json")).json()
        assert not [p for p in spec["paths"] if p.startswith("/client")]


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("client/v1", "must be empty, or start with '/'"),
        ("/client/v1/", "must be empty, or start with '/'"),
        ("/api/v1", "must not be API_V1_STR"),
        ("/api", "must not be API_V1_STR"),
        ("/api/v1/client", "must not be API_V1_STR"),
    ],
)
def test_a_prefix_that_cannot_work_is_refused(tmp_path: Path, prefix: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        make_settings("sqlite+aiosqlite:///x.db", tmp_path, CLIENT_API_PREFIX=prefix)


def test_the_grace_window_is_at_most_ten_seconds(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="CLIENT_REFRESH_GRACE_SECONDS"):
        make_settings("sqlite+aiosqlite:///x.db", tmp_path, CLIENT_REFRESH_GRACE_SECONDS=30)
