"""Several processes behind one load balancer agree: two real `telaten serve` processes
on one database and one data directory, a request to either is the same request.

What they share lives in the database (users, refresh-token families, login failures,
roadmap requests) or in the data directory (the development signing key); what is per
process (MCP client sessions and their stdio children, the roadmap worker's tasks, the
LLM client) holds no state another process needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, bearer, login, new_account
from tests.helpers.databases import fresh_database_url
from tests.helpers.server import ServerProcess, clean_env

# Several server processes on one database.
pytestmark = pytest.mark.slow


@pytest.fixture
async def two_servers(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two processes started at the same moment on an empty database (so they also race
    to migrate and to create the first admin), with the fake LLM configured."""
    async with fresh_database_url(tmp_path, "scale") as url:
        env = clean_env(
            DATABASE_URL=url,
            DATA_DIR=str(tmp_path / "data"),
            BCRYPT_ROUNDS="4",
            FIRST_ADMIN_PASSWORD=ADMIN_PASSWORD,
            LLM_BASE_URL=fake_llm.base_url,
            LLM_MODEL_NAME="fake-model",
            LLM_MAX_RETRIES="0",
            LOGIN_MAX_FAILURES="3",
            LOGIN_MAX_FAILURES_PER_ACCOUNT="6",
        )
        servers = [ServerProcess(env, tmp_path) for _ in range(2)]
        try:
            await asyncio.gather(*(asyncio.to_thread(s.wait_ready) for s in servers))
            async with (
                httpx.AsyncClient(base_url=servers[0].base_url, timeout=30) as a,
                httpx.AsyncClient(base_url=servers[1].base_url, timeout=30) as b,
            ):
                yield a, b
        finally:
            for server in servers:
                server.stop()


async def test_two_processes_agree_on_tokens_throttling_admin_and_roadmaps(
    two_servers: tuple[httpx.AsyncClient, httpx.AsyncClient], fake_llm: FakeLLMServer
) -> None:
    a, b = two_servers

    # One first admin, whichever process is asked.
    for client in (a, b):
        r = await login(client, "admin@telaten.com", ADMIN_PASSWORD)
        assert r.status_code == 200, r.text
    admin = bearer(r.json()["access_token"])
    users = (await b.get(f"{API}/admin/users", headers=admin, params={"limit": 100})).json()
    assert [u["email"] for u in users["items"]].count("admin@telaten.com") == 1

    # A token from one process works on the other (one signing key in the data dir).
    owner = await new_account(a)
    me = await b.get(f"{API}/auth/me", headers=owner.headers)
    assert me.status_code == 200 and me.json()["id"] == owner.id

    # Refresh rotation is shared: rotated on A, the old token replayed on B is theft.
    r = await a.post(f"{API}/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert r.status_code == 200
    rotated = r.json()["refresh_token"]
    a.cookies.clear()
    r = await b.post(f"{API}/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert r.status_code == 401
    b.cookies.clear()
    r = await a.post(f"{API}/auth/refresh", json={"refresh_token": rotated})
    assert r.status_code == 401  # the whole family was revoked, on either process

    # Login throttling counts failures from both processes: LOGIN_MAX_FAILURES=3 per
    # account and address, whichever process the address reaches ...
    victim = await new_account(b)
    codes = []
    for client in (a, b, a, b):
        codes.append((await login(client, victim.email, "wrong-password-123")).status_code)
    assert codes == [401, 401, 401, 429]
    assert (await login(a, victim.email, victim.password)).status_code == 429
    # ... while the owner, from another address, logs in on either process.
    for server in (a, b):
        async with httpx.AsyncClient(
            base_url=str(server.base_url),
            transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"),
            timeout=30,
        ) as elsewhere:
            assert (await login(elsewhere, victim.email, victim.password)).status_code == 200
    # And both processes count toward LOGIN_MAX_FAILURES_PER_ACCOUNT=6 across the
    # addresses the owner never logged in from (127.0.0.1 and .2 are theirs: not counted).
    for n, server in enumerate((a, b)):
        async with httpx.AsyncClient(
            base_url=str(server.base_url),
            transport=httpx.AsyncHTTPTransport(local_address=f"127.0.0.{3 + n}"),
            timeout=30,
        ) as guesser:
            codes = [
                (await login(guesser, victim.email, "wrong-password-123")).status_code
                for _ in range(3)
            ]
            assert codes == [401] * 3
    async with httpx.AsyncClient(
        base_url=str(a.base_url),
        transport=httpx.AsyncHTTPTransport(local_address="127.0.0.5"),
        timeout=30,
    ) as guesser:
        assert (await login(guesser, victim.email, "wrong-password-123")).status_code == 429

    # A roadmap request recorded by one process is run once, by one of the two workers.
    name = "Warung Dua Proses"
    fake_llm.script_roadmap(Reply.roadmap(4, match=name, title="Bersama"))
    r = await a.post(
        f"{API}/business", headers=owner.headers, json={"name": name, "category": "Kuliner"}
    )
    assert r.status_code == 201
    for _ in range(200):
        generation = (await b.get(f"{API}/milestones/generation", headers=owner.headers)).json()
        if generation["status"] in {"succeeded", "failed", "skipped"}:
            break
        await asyncio.sleep(0.1)
    assert generation["status"] == "succeeded" and generation["attempts"] == 1
    items = (await b.get(f"{API}/milestones", headers=owner.headers)).json()["items"]
    assert [m["title"] for m in items] == [f"Bersama {n}" for n in range(1, 5)]
    assert len([r for r in fake_llm.roadmap_requests if name in str(r)]) == 1
