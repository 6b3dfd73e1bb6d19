"""The default admin bootstrap and the `/admin/users` API."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.logging import configure_logging
from app.db.init_data import admin_password_path
from app.main import create_app
from app.modules.users.models import User
from tests.conftest import ADMIN_PASSWORD, asgi_client, make_settings
from tests.helpers.accounts import API, Account, bearer, login, new_account
from tests.helpers.databases import fresh_database_url
from tests.helpers.server import ServerProcess, clean_env, telaten


async def admin_headers(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    r = await login(client, settings.FIRST_ADMIN_EMAIL, ADMIN_PASSWORD)
    assert r.status_code == 200, r.text
    client.cookies.clear()
    return bearer(r.json()["access_token"])


# --- bootstrap ----------------------------------------------------------------------------


async def test_generated_admin_password_is_in_a_0600_file_and_never_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    async with fresh_database_url(tmp_path, "boot") as url:
        boot = make_settings(
            url, tmp_path / "data", FIRST_ADMIN_PASSWORD=None, LOG_LEVEL="DEBUG", LOG_FORMAT="json"
        )
        app = create_app(boot)
        try:
            async with LifespanManager(app):
                path = admin_password_path(boot)
                password = path.read_text().strip()
                assert stat.S_IMODE(path.stat().st_mode) == 0o600
                assert len(password) >= 20
                async with asgi_client(app) as c:
                    r = await login(c, "admin@telaten.com", password)
                    assert r.status_code == 200
                    me = await c.get(f"{API}/auth/me", headers=bearer(r.json()["access_token"]))
                    assert me.json()["role"] == "admin"
        finally:
            configure_logging(settings)
        logs = capsys.readouterr().err
        lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        created = [line for line in lines if line["event"] == "first_admin_created"]
        assert created and created[0]["saved_in"] == str(path)
        assert password not in logs


async def test_configured_admin_password_is_used_and_not_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    async with fresh_database_url(tmp_path, "boot2") as url:
        boot = make_settings(url, tmp_path / "data", LOG_LEVEL="DEBUG", LOG_FORMAT="json")
        app = create_app(boot)
        try:
            async with LifespanManager(app), asgi_client(app) as c:
                assert (await login(c, boot.FIRST_ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200
        finally:
            configure_logging(settings)
        assert not admin_password_path(boot).exists()
        assert ADMIN_PASSWORD not in capsys.readouterr().err


@pytest.mark.slow
async def test_bootstrap_is_idempotent_and_safe_with_concurrent_workers(tmp_path: Path) -> None:
    """Three workers (real processes) start on one empty database at the same moment."""
    async with fresh_database_url(tmp_path, "boot3") as url:
        env = clean_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), BCRYPT_ROUNDS="4")
        servers = [ServerProcess(env, tmp_path) for _ in range(3)]
        try:
            for server in servers:
                await asyncio.to_thread(server.wait_ready)
        finally:
            for server in servers:
                server.stop()
        logs = "".join(server.logs() for server in servers)
        password = (tmp_path / "data" / "first_admin_password").read_text().strip()
        assert password not in logs
        db_settings = make_settings(url, tmp_path / "data")
        app = create_app(db_settings)
        async with LifespanManager(app):  # a fourth start: nothing new is created
            async with app.state.context.db.sessionmaker() as session:
                count = await session.scalar(select(func.count()).select_from(User))
            assert count == 1
            async with asgi_client(app) as c:
                assert (await login(c, "admin@telaten.com", password)).status_code == 200


@pytest.mark.slow
async def test_cli_create_admin(tmp_path: Path) -> None:
    async with fresh_database_url(tmp_path, "cli") as url:
        env = clean_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), BCRYPT_ROUNDS="4")
        assert telaten("migrate", env=env, cwd=tmp_path).returncode == 0
        result = await asyncio.to_thread(
            telaten,
            "create-admin",
            "--email",
            "Boss@Example.com",
            "--name",
            "Boss",
            env={**env, "TELATEN_ADMIN_PASSWORD": "Boss-Password-99"},
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert "Boss-Password-99" not in result.stdout + result.stderr
        again = telaten(
            "create-admin",
            "--email",
            "boss@example.com",
            "--name",
            "Boss",
            env={**env, "TELATEN_ADMIN_PASSWORD": "Boss-Password-99"},
            cwd=tmp_path,
        )
        assert again.returncode != 0 and "already exists" in again.stderr
        short = telaten(
            "create-admin",
            "--email",
            "x@example.com",
            "--name",
            "X",
            env={**env, "TELATEN_ADMIN_PASSWORD": "short"},
            cwd=tmp_path,
        )
        assert short.returncode != 0 and "password" in short.stderr
        app = create_app(make_settings(url, tmp_path / "data"))
        async with LifespanManager(app), asgi_client(app) as c:
            r = await login(c, "boss@example.com", "Boss-Password-99")
            assert r.status_code == 200
            me = await c.get(f"{API}/auth/me", headers=bearer(r.json()["access_token"]))
            assert me.json()["role"] == "admin"


# --- admin API -------------------------------------------------------------------------


async def test_admin_routes_need_an_admin(client: httpx.AsyncClient) -> None:
    user = await new_account(client)
    some_id = uuid.uuid4()
    for method, path in (
        ("GET", "/admin/users"),
        ("GET", f"/admin/users/{some_id}"),
        ("PATCH", f"/admin/users/{some_id}"),
    ):
        assert (await client.request(method, API + path, json={})).status_code == 401
        r = await client.request(method, API + path, headers=user.headers, json={})
        assert r.status_code == 403, (method, path, r.text)


async def test_admin_lists_searches_and_pages(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = await admin_headers(client, settings)
    marker = uuid.uuid4().hex[:8]
    for i in range(3):
        r = await client.post(
            f"{API}/auth/register",
            json={
                "email": f"s{i}-{marker}@example.com",
                "name": f"Toko {marker} {i}",
                "password": "Password-123",
            },
        )
        assert r.status_code == 201
    r = await client.get(
        f"{API}/admin/users", headers=headers, params={"q": marker.upper(), "limit": 2}
    )
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == 3 and len(page["items"]) == 2 and page["limit"] == 2
    r = await client.get(
        f"{API}/admin/users", headers=headers, params={"q": marker, "limit": 2, "offset": 2}
    )
    assert len(r.json()["items"]) == 1
    # LIKE wildcards in the search are literal.
    r = await client.get(f"{API}/admin/users", headers=headers, params={"q": "%"})
    assert r.status_code == 200 and r.json()["total"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"limit": -1},
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"offset": -1},
        {"offset": 2**64},
        {"limit": 2**70},
        {"q": "a\x00b"},
        {"q": "x" * 1000},
    ],
)
async def test_admin_list_rejects_bad_paging_and_search(
    client: httpx.AsyncClient, settings: Settings, params: dict[str, object]
) -> None:
    headers = await admin_headers(client, settings)
    r = await client.get(f"{API}/admin/users", headers=headers, params=params)
    assert r.status_code == 422, r.text


async def test_admin_get_user_404_and_422(client: httpx.AsyncClient, settings: Settings) -> None:
    headers = await admin_headers(client, settings)
    assert (
        await client.get(f"{API}/admin/users/{uuid.uuid4()}", headers=headers)
    ).status_code == 404
    assert (await client.get(f"{API}/admin/users/not-a-uuid", headers=headers)).status_code == 422
    assert (await client.get(f"{API}/admin/users/{2**70}", headers=headers)).status_code == 422


async def test_admin_changes_role_and_deactivates(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = await admin_headers(client, settings)
    user: Account = await new_account(client)
    r = await client.patch(f"{API}/admin/users/{user.id}", headers=headers, json={"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    r = await client.get(f"{API}/admin/users", headers=user.headers)  # promoted, same token
    assert r.status_code == 200
    r = await client.patch(f"{API}/admin/users/{user.id}", headers=headers, json={"role": "user"})
    assert r.json()["role"] == "user"
    assert (
        await client.patch(f"{API}/admin/users/{user.id}", headers=headers, json={"role": "root"})
    ).status_code == 422

    # Deactivated: old tokens stop working at once, and login is refused.
    r = await client.patch(
        f"{API}/admin/users/{user.id}", headers=headers, json={"is_active": False}
    )
    assert r.status_code == 200 and r.json()["is_active"] is False
    assert (await client.get(f"{API}/auth/me", headers=user.headers)).status_code == 401
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": user.refresh_token})
    assert r.status_code == 401
    r = await login(client, user.email, user.password)
    assert r.status_code == 403 and "deactivated" in r.json()["detail"]

    r = await client.patch(
        f"{API}/admin/users/{user.id}", headers=headers, json={"is_active": True}
    )
    assert r.status_code == 200
    assert (await login(client, user.email, user.password)).status_code == 200
    # Tokens from before the deactivation stay dead.
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": user.refresh_token})
    assert r.status_code == 401


@pytest.fixture
async def lone_admin_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """An app on a database of its own, where the bootstrap admin is the only admin."""
    async with fresh_database_url(tmp_path, "admins") as url:
        app = create_app(make_settings(url, tmp_path / "data"))
        async with LifespanManager(app):
            yield app


async def test_last_active_admin_cannot_be_removed(lone_admin_app: FastAPI) -> None:
    settings = lone_admin_app.state.context.settings
    async with asgi_client(lone_admin_app) as c:
        headers = await admin_headers(c, settings)
        me = (await c.get(f"{API}/auth/me", headers=headers)).json()
        for body in ({"role": "user"}, {"is_active": False}):
            r = await c.patch(f"{API}/admin/users/{me['id']}", headers=headers, json=body)
            assert r.status_code == 409

        second = await new_account(c)
        r = await c.patch(f"{API}/admin/users/{second.id}", headers=headers, json={"role": "admin"})
        assert r.status_code == 200
        # Now two admins demote each other at the same moment: one must fail.
        results = await asyncio.gather(
            c.patch(f"{API}/admin/users/{second.id}", headers=headers, json={"role": "user"}),
            c.patch(f"{API}/admin/users/{me['id']}", headers=second.headers, json={"role": "user"}),
        )
        codes = sorted(r.status_code for r in results)
        assert codes[0] == 200 and codes[1] in (409, 503), [r.text for r in results]
        async with lone_admin_app.state.context.db.sessionmaker() as session:
            admins = await session.scalar(
                select(func.count())
                .select_from(User)
                .where(User.role == "admin", User.is_active.is_(True))
            )
        assert admins == 1
