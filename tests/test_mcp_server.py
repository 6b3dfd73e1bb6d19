"""Telaten as an MCP server: the `mcp` SDK's own client against a real `telaten serve`
(Streamable HTTP at /mcp, legacy SSE at /mcp/sse) and against `telaten mcp serve --stdio`,
with every effect checked through the HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from app.api.tools import DOMAIN_TOOLS
from app.core.security import TokenCodec
from app.main import create_app
from tests.conftest import ADMIN_PASSWORD, asgi_client, llm_settings, make_settings
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, Account, bearer, new_account
from tests.helpers.business import owner_with_business
from tests.helpers.databases import fresh_database_url
from tests.helpers.server import REPO_ROOT, ServerProcess, clean_env, telaten
from tests.helpers.sse import chat

SECRET = "mcp-server-tests-signing-key-0123456789abcdef"
TRANSPORTS = ["streamable-http", "sse"]


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """One `telaten serve` (no LLM) on its own database, for the whole module."""
    workdir = tmp_path_factory.mktemp("mcp-server")
    async with fresh_database_url(workdir, "mcpserver") as url:
        env = server_env(url, workdir)
        with ServerProcess(env, workdir) as process:
            process.env = env  # type: ignore[attr-defined]
            yield process


def server_env(database_url: str, workdir: Path) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=database_url,
        DATA_DIR=str(workdir / "data"),
        BCRYPT_ROUNDS="4",
        SECRET_KEY=SECRET,
        FIRST_ADMIN_PASSWORD=ADMIN_PASSWORD,
        REGISTER_MAX_PER_CLIENT="1000",  # every test account comes from 127.0.0.1
        MCP_SERVER_STREAM_RECHECK_SECONDS="1",  # open SSE streams re-check their token often
    )


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        yield client


@asynccontextmanager
async def mcp_session(
    server: ServerProcess, token: str, transport: str
) -> AsyncIterator[ClientSession]:
    """An initialised SDK client session to our server, as the token's owner."""
    headers = bearer(token)
    if transport == "sse":
        async with (
            sse_client(f"{server.base_url}/mcp/sse", headers=headers) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session
        return
    client = create_mcp_http_client(headers=headers)
    async with (
        client,
        streamable_http_client(f"{server.base_url}/mcp", http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def stdio_params(server: ServerProcess, token: str) -> StdioServerParameters:
    """`telaten mcp serve --stdio` on the server's database and key, as the token's owner."""
    env = {**server.env, "TELATEN_ACCESS_TOKEN": token}  # type: ignore[attr-defined]
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "app.cli", "mcp", "serve", "--stdio"],
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        cwd=str(server.cwd),
    )


async def call(session: ClientSession, name: str, arguments: dict[str, Any]) -> tuple[Any, bool]:
    """(the tool's JSON output, or its error text; whether it is an error)."""
    result = await session.call_tool(name, arguments)
    text = result.content[0].text  # type: ignore[union-attr]
    return (text if result.is_error else json.loads(text)), bool(result.is_error)


# --- tools and schemas --------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_advisors_tools_are_listed_with_their_schemas(
    server: ServerProcess, api: httpx.AsyncClient, transport: str
) -> None:
    owner = await owner_with_business(api, "Warung MCP")
    async with mcp_session(server, owner.access_token, transport) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert list(tools) == [spec.name for spec in DOMAIN_TOOLS]  # one registry
    record = tools["record_transaction"].input_schema
    assert set(record["required"]) == {"type", "amount", "category"}
    assert record["properties"]["amount"]["type"] == "integer"
    assert record["properties"]["amount"]["maximum"] == 1_000_000_000_000
    assert tools["delete_milestone"].annotations.destructive_hint is True
    assert tools["list_transactions"].annotations.read_only_hint is True
    for tool in tools.values():
        assert tool.description
        # Identity comes from the token only: no tool can be pointed at someone else.
        names = set(tool.input_schema.get("properties", {}))
        assert not names & {"user_id", "business_id", "owner_id", "account_id"}


# --- read and write, seen through the API -------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_read_and_write_tools_act_on_the_token_owners_business(
    server: ServerProcess, api: httpx.AsyncClient, transport: str
) -> None:
    owner = await owner_with_business(api, "Warung MCP")
    async with mcp_session(server, owner.access_token, transport) as session:
        recorded, is_error = await call(
            session,
            "record_transaction",
            {"type": "income", "amount": 275000, "category": "penjualan", "note": "lewat MCP"},
        )
        assert not is_error, recorded
        assert recorded["points_awarded"] == 5
        listed, _ = await call(session, "list_transactions", {"limit": 5})
        assert [t["id"] for t in listed["transactions"]] == [recorded["recorded"]["id"]]
        created, is_error = await call(
            session,
            "create_milestone",
            {"title": "Daftar GoFood", "tasks": ["Foto menu", "Isi formulir"]},
        )
        assert not is_error, created
        milestone = created["created"]
        done, _ = await call(
            session,
            "complete_task",
            {"milestone_id": milestone["id"], "task_id": milestone["tasks"][0]["id"]},
        )
        assert done["points_awarded"] == 5

    r = await api.get(f"{API}/finance/transactions", headers=owner.headers)
    (entry,) = r.json()["items"]
    assert (entry["amount"], entry["note"], entry["category_name"]) == (
        275000,
        "lewat MCP",
        "Penjualan",
    )
    r = await api.get(f"{API}/milestones/{milestone['id']}", headers=owner.headers)
    assert r.json()["status"] == "in_progress" and r.json()["tasks_done"] == 1
    me = (await api.get(f"{API}/gamification/me", headers=owner.headers)).json()
    assert me["total_points"] == 10


async def test_a_refused_rule_is_a_tool_error_not_a_crash(
    server: ServerProcess, api: httpx.AsyncClient
) -> None:
    owner = await owner_with_business(api, "Warung MCP")
    async with mcp_session(server, owner.access_token, "streamable-http") as session:
        text, is_error = await call(
            session, "record_transaction", {"type": "income", "amount": 10, "category": "Nope"}
        )
        assert is_error and "Penjualan" in text  # the categories there are
        text, is_error = await call(
            session, "record_transaction", {"type": "income", "amount": -5, "category": "x"}
        )
        assert is_error
    r = await api.get(f"{API}/finance/transactions", headers=owner.headers)
    assert r.json()["total"] == 0


# --- who may call -------------------------------------------------------------------------


async def test_requests_without_a_valid_access_token_are_401(
    server: ServerProcess, api: httpx.AsyncClient
) -> None:
    owner = await owner_with_business(api, "Warung MCP")
    codec = TokenCodec(SECRET, timedelta(minutes=5), timedelta(days=1))
    expired = codec.issue(
        uuid.UUID(owner.id), "access", now=datetime.now(UTC) - timedelta(hours=1)
    ).token
    forged = TokenCodec("another-key-" + "x" * 40, timedelta(minutes=5), timedelta(days=1))
    bad_tokens = {
        "none": {},
        "basic": {"Authorization": "Basic YTpi"},
        "bare bearer": {"Authorization": "Bearer"},
        "garbage": bearer("not-a-jwt"),
        "refresh token": bearer(owner.refresh_token),
        "expired": bearer(expired),
        "other key": bearer(forged.issue(uuid.UUID(owner.id), "access").token),
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for label, headers in bad_tokens.items():
        for method, path in (("POST", "/mcp"), ("GET", "/mcp/sse"), ("POST", "/mcp/messages/")):
            r = await api.request(
                method,
                path,
                headers={**headers, "Accept": "application/json, text/event-stream"},
                json=body if method == "POST" else None,
            )
            assert r.status_code == 401, (label, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "detail" in r.json()
    # ... and the SDK client cannot get a session with a refresh token.
    with pytest.raises(Exception):  # noqa: B017 - the SDK's error types vary by transport
        async with mcp_session(server, owner.refresh_token, "streamable-http") as session:
            await session.list_tools()


async def test_a_deactivated_users_token_stops_working(
    server: ServerProcess, api: httpx.AsyncClient
) -> None:
    owner = await owner_with_business(api, "Warung MCP")
    async with mcp_session(server, owner.access_token, "streamable-http") as session:
        assert (await session.list_tools()).tools
    r = await api.post(
        f"{API}/auth/login", json={"email": "admin@telaten.com", "password": ADMIN_PASSWORD}
    )
    admin = bearer(r.json()["access_token"])
    r = await api.patch(f"{API}/admin/users/{owner.id}", headers=admin, json={"is_active": False})
    assert r.status_code == 200, r.text
    r = await api.post("/mcp", headers=owner.headers, json={})
    assert r.status_code == 401


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_another_users_token_sees_and_changes_only_its_own_data(
    server: ServerProcess, api: httpx.AsyncClient, transport: str
) -> None:
    alice = await owner_with_business(api, "Toko Alice")
    bob = await owner_with_business(api, "Toko Bob")
    r = await api.post(
        f"{API}/milestones",
        headers=alice.headers,
        json={"title": "Milik Alice", "tasks": ["Satu", "Dua"]},
    )
    mine = r.json()
    task = mine["tasks"][0]["id"]
    async with mcp_session(server, bob.access_token, transport) as session:
        listed, _ = await call(session, "list_milestones", {"status": "all"})
        assert listed["milestones"] == []
        summary, _ = await call(session, "business_summary", {})
        assert summary["name"] == "Toko Bob"
        for name, arguments in [
            ("start_milestone", {"milestone_id": mine["id"]}),
            ("update_milestone", {"milestone_id": mine["id"], "title": "Dibajak"}),
            ("complete_task", {"milestone_id": mine["id"], "task_id": task}),
            ("delete_milestone", {"milestone_id": mine["id"], "confirm": True}),
            (
                "create_milestone",
                {"title": "x", "tasks": ["y"], "replaces_milestone_id": mine["id"]},
            ),
        ]:
            text, is_error = await call(session, name, arguments)
            assert is_error and "not found" in text.lower(), (name, text)
        # Extra arguments naming someone else are not parameters: they change nothing.
        text, is_error = await call(
            session, "business_summary", {"business_id": mine["id"], "user_id": alice.id}
        )
        assert is_error or text["name"] == "Toko Bob"
    after = (await api.get(f"{API}/milestones/{mine['id']}", headers=alice.headers)).json()
    assert after == mine


# --- stdio -------------------------------------------------------------------------------


@pytest.mark.slow
async def test_stdio_serves_the_token_owner(server: ServerProcess, api: httpx.AsyncClient) -> None:
    owner = await owner_with_business(api, "Warung MCP")
    params = stdio_params(server, owner.access_token)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        assert len(tools) == len(DOMAIN_TOOLS)
        summary, _ = await call(session, "business_summary", {})
        assert summary["name"] == "Warung MCP"
        recorded, is_error = await call(
            session,
            "record_transaction",
            {"type": "expense", "amount": 12000, "category": "Bahan Baku"},
        )
        assert not is_error, recorded
    r = await api.get(f"{API}/finance/transactions", headers=owner.headers)
    assert [t["amount"] for t in r.json()["items"]] == [12000]


@pytest.mark.slow
def test_stdio_refuses_a_missing_or_bad_token(server: ServerProcess) -> None:
    env = dict(server.env)  # type: ignore[attr-defined]
    result = telaten("mcp", "serve", "--stdio", env=env, cwd=server.cwd)
    assert result.returncode == 2 and "TELATEN_ACCESS_TOKEN" in result.stderr
    result = telaten(
        "mcp", "serve", "--stdio", env={**env, "TELATEN_ACCESS_TOKEN": "nope"}, cwd=server.cwd
    )
    assert result.returncode == 2 and "TELATEN_ACCESS_TOKEN" in result.stderr
    assert result.stdout == ""  # nothing on the protocol channel


# --- our own MCP client, pointed at a Telaten server ---------------------------------------


@pytest.mark.slow
async def test_our_mcp_client_refuses_a_telaten_server_in_mcp_json(
    server: ServerProcess,
    api: httpx.AsyncClient,
    database_url: str,
    tmp_path: Path,
    fake_llm: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """mcp.json's servers serve everyone who chats with the advisor, while a Telaten MCP
    server's tools act on the one account whose token the entry carries: such an entry
    (over any transport, this deployment's or another's) would give every chatting user
    that account's books. Our client refuses it by the name the server introduces itself
    with, does not retry it, and offers the model none of its tools."""
    remote = await owner_with_business(api, "Warung Jarak Jauh")
    monkeypatch.setenv("REMOTE_TELATEN_TOKEN", remote.access_token)
    auth = {"Authorization": "Bearer ${REMOTE_TELATEN_TOKEN}"}
    stdio = stdio_params(server, remote.access_token)
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "remote": {"url": f"{server.base_url}/mcp", "headers": auth},
                    "remote-sse": {"url": f"{server.base_url}/mcp/sse", "headers": auth},
                    "local": {
                        "command": stdio.command,
                        "args": stdio.args,
                        "env": stdio.env,
                        "cwd": str(stdio.cwd),
                    },
                }
            }
        )
    )
    settings = make_settings(
        database_url, tmp_path / "data", MCP_CONFIG_PATH=config, **llm_settings(fake_llm)
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        statuses = app.state.context.mcp.status()
        assert {s["name"] for s in statuses} == {"remote", "remote-sse", "local"}
        for status in statuses:
            assert status["state"] == "down" and status["tools"] == [], status
            assert "refused" in status["last_error"] and "Telaten" in status["last_error"]
        result = await app.state.context.mcp.call("remote", "business_summary", {})
        assert result.is_error and "Warung" not in result.text
        async with asgi_client(app) as local:
            me = await new_account(local)
            fake_llm.script(Reply.of_text("Baik."))
            await chat(local, me.headers, "Halo")
        offered = {t["function"]["name"] for t in fake_llm.requests[0]["tools"]}
        assert "get_my_account" in offered  # our own tools, in process, for the caller
        assert not any(name.startswith(("remote", "local")) for name in offered)
        await asyncio.sleep(3)  # a retried server would have tried again by now (0.5, 1, 2 s)
        assert [s["attempts"] for s in app.state.context.mcp.status()] == [1, 1, 1]
    r = await api.get(f"{API}/finance/transactions", headers=remote.headers)
    assert r.json()["total"] == 0


# --- sessions and limits -------------------------------------------------------------------


async def test_an_sse_session_is_bound_to_the_user_who_opened_it(
    server: ServerProcess, api: httpx.AsyncClient
) -> None:
    alice = await owner_with_business(api, "Toko Alice")
    bob = await owner_with_business(api, "Toko Bob")
    async with api.stream("GET", "/mcp/sse", headers=alice.headers) as stream:
        lines = stream.aiter_lines()
        endpoint = ""
        async for line in lines:
            if line.startswith("data: "):
                endpoint = line.removeprefix("data: ")
                break
        assert endpoint.startswith("/mcp/messages/?session_id=")
        message = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}}
        r = await api.post(endpoint, headers=bob.headers, json=message)
        assert r.status_code == 404  # as if the session did not exist
        r = await api.post(endpoint, headers=alice.headers, json=message)
        assert r.status_code == 202


async def test_open_sse_streams_are_limited_per_user(
    server: ServerProcess, api: httpx.AsyncClient
) -> None:
    owner = await owner_with_business(api, "Warung MCP")
    other = await owner_with_business(api, "Warung MCP")
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(5):
            stream = await stack.enter_async_context(
                api.stream("GET", "/mcp/sse", headers=owner.headers)
            )
            assert stream.status_code == 200
        r = await api.get("/mcp/sse", headers=owner.headers)
        assert r.status_code == 429 and r.headers["retry-after"] and r.json()["detail"]
        async with api.stream("GET", "/mcp/sse", headers=other.headers) as stream:
            assert stream.status_code == 200  # one user's streams do not lock others out
    # Closed streams give their places back, once the server has seen them close.
    for _ in range(300):
        async with api.stream("GET", "/mcp/sse", headers=owner.headers) as stream:
            if stream.status_code == 200:
                break
        await asyncio.sleep(0.1)
    assert stream.status_code == 200


@pytest.mark.slow
async def test_open_sse_streams_are_limited_per_user_across_processes(
    server: ServerProcess, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Two processes on one database (two workers or hosts) share one user's places."""
    owner = await owner_with_business(api, "Warung MCP")
    other = await owner_with_business(api, "Warung MCP")
    env = server.env  # type: ignore[attr-defined]
    with ServerProcess(env, tmp_path) as twin:
        async with (
            httpx.AsyncClient(base_url=twin.base_url, timeout=30) as twin_api,
            contextlib.AsyncExitStack() as stack,
        ):
            for client in (api, api, api, twin_api, twin_api):
                stream = await stack.enter_async_context(
                    client.stream("GET", "/mcp/sse", headers=owner.headers)
                )
                assert stream.status_code == 200
            for client in (twin_api, api):
                async with client.stream("GET", "/mcp/sse", headers=owner.headers) as r:
                    assert r.status_code == 429  # (a stream would never end: not .get)
                    body = json.loads(await r.aread())
                assert int(r.headers["retry-after"]) >= 1 and body["detail"]
            async with twin_api.stream("GET", "/mcp/sse", headers=other.headers) as stream:
                assert stream.status_code == 200


# --- long-lived streams end with their credential ------------------------------------------


async def test_get_on_the_streamable_http_endpoint_is_405_not_an_endless_stream(
    server: ServerProcess, api: httpx.AsyncClient
) -> None:
    """Our tools never call the client back, so /mcp offers no server-initiated stream
    (the spec's 405); the SDK's client copes (every streamable-http test here uses it)."""
    owner = await owner_with_business(api, "Warung MCP")
    headers = {**owner.headers, "Accept": "text/event-stream"}
    for who in (headers, {"Accept": "text/event-stream"}):
        async with asyncio.timeout(30), api.stream("GET", "/mcp", headers=who) as r:
            assert r.status_code == 405
            body = json.loads(await r.aread())
        assert r.headers["allow"] == "POST" and body["detail"]
    r = await api.delete("/mcp", headers=owner.headers)
    assert r.status_code == 405 and r.json()["detail"]


async def sse_endpoint(lines: AsyncIterator[str]) -> str:
    """The legacy SSE stream's first event: where to post messages."""
    async for line in lines:
        if line.startswith("data: "):
            return line.removeprefix("data: ")
    raise AssertionError("the stream ended before its endpoint event")


async def ends_cleanly(lines: AsyncIterator[str], within: float = 60) -> bool:
    """Whether the server ends the stream (a complete HTTP response) within `within`
    seconds; httpx raises if the connection is cut mid-response instead."""
    try:
        async with asyncio.timeout(within):
            async for _ in lines:
                pass
    except TimeoutError:
        return False
    return True


async def admin_headers(api: httpx.AsyncClient) -> dict[str, str]:
    r = await api.post(
        f"{API}/auth/login", json={"email": "admin@telaten.com", "password": ADMIN_PASSWORD}
    )
    assert r.status_code == 200, r.text
    return bearer(r.json()["access_token"])


@pytest.mark.slow
async def test_an_sse_stream_ends_when_its_user_is_deactivated(
    server: ServerProcess, api: httpx.AsyncClient
) -> None:
    owner = await owner_with_business(api, "Warung MCP")
    bystander = await owner_with_business(api, "Warung MCP")
    admin = await admin_headers(api)
    async with (
        api.stream("GET", "/mcp/sse", headers=owner.headers) as stream,
        api.stream("GET", "/mcp/sse", headers=bystander.headers) as kept,
    ):
        assert stream.status_code == 200 and kept.status_code == 200
        lines, kept_lines = stream.aiter_lines(), kept.aiter_lines()
        endpoint = await sse_endpoint(lines)
        await sse_endpoint(kept_lines)
        r = await api.patch(
            f"{API}/admin/users/{owner.id}", headers=admin, json={"is_active": False}
        )
        assert r.status_code == 200, r.text
        assert await ends_cleanly(lines)
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        r = await api.post(endpoint, headers=owner.headers, json=message)
        assert r.status_code == 401
        # Another user's stream is not touched.
        assert not await ends_cleanly(kept_lines, within=3)
    # The ended stream gave its place back: the reactivated owner may open five again.
    r = await api.patch(f"{API}/admin/users/{owner.id}", headers=admin, json={"is_active": True})
    assert r.status_code == 200, r.text
    r = await api.post(f"{API}/auth/login", json={"email": owner.email, "password": owner.password})
    fresh = bearer(r.json()["access_token"])
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(5):
            stream = await stack.enter_async_context(api.stream("GET", "/mcp/sse", headers=fresh))
            assert stream.status_code == 200


async def test_an_sse_stream_ends_when_the_users_sessions_are_ended(
    server: ServerProcess, api: httpx.AsyncClient
) -> None:
    """A password change ends every session: tokens issued before it stop working, and so
    do the streams opened with them."""
    owner = await owner_with_business(api, "Warung MCP")
    async with api.stream("GET", "/mcp/sse", headers=owner.headers) as stream:
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        await sse_endpoint(lines)
        r = await api.post(
            f"{API}/auth/me/password",
            headers=owner.headers,
            json={"current_password": owner.password, "new_password": "Sandi-Baru-456789"},
        )
        assert r.status_code == 200, r.text
        assert await ends_cleanly(lines)


@pytest.mark.slow
async def test_an_sse_stream_ends_when_its_token_expires(
    server: ServerProcess, api: httpx.AsyncClient
) -> None:
    owner = await owner_with_business(api, "Warung MCP")
    codec = TokenCodec(SECRET, timedelta(seconds=4), timedelta(days=1))
    short = bearer(codec.issue(uuid.UUID(owner.id), "access").token)
    async with api.stream("GET", "/mcp/sse", headers=short) as stream:
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        await sse_endpoint(lines)
        assert await ends_cleanly(lines)
    # The owner's own (long) token still opens a stream: only the expired one ended.
    async with api.stream("GET", "/mcp/sse", headers=owner.headers) as stream:
        assert stream.status_code == 200


async def test_concurrent_callers_never_see_each_others_identity(
    server: ServerProcess, api: httpx.AsyncClient
) -> None:
    owners = [await owner_with_business(api, f"Toko {n}") for n in range(4)]

    async def names(owner: Account, transport: str) -> set[str]:
        async with mcp_session(server, owner.access_token, transport) as session:
            results = await asyncio.gather(
                *(call(session, "business_summary", {}) for _ in range(10))
            )
        return {summary["name"] for summary, _ in results}

    seen = await asyncio.gather(
        *(names(owner, transport) for owner in owners for transport in TRANSPORTS)
    )
    expected = [{f"Toko {n}"} for n in range(4) for _ in TRANSPORTS]
    assert seen == expected


async def _call_after_expiry(server: ServerProcess, owner: Account, lifetime: float) -> str | None:
    """Start the stdio server with a token of `lifetime` seconds, call a tool, wait past
    the expiry and call again: the second answer's text, or None when the token had
    expired before the child checked it (it started too slowly for that lifetime)."""
    codec = TokenCodec(SECRET, timedelta(seconds=lifetime), timedelta(days=1))
    issued = codec.issue(uuid.UUID(owner.id), "access")
    try:
        async with (
            stdio_client(stdio_params(server, issued.token)) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            _, is_error = await call(session, "business_summary", {})
            if is_error:
                return None
            # Past the expiry and the verifier's leeway (5 s).
            await asyncio.sleep((issued.expires_at - datetime.now(UTC)).total_seconds() + 6)
            text, is_error = await call(session, "business_summary", {})
            return text if is_error else "(no error)"
    except Exception:  # the child refused the token at its start and exited
        return None


@pytest.mark.slow
async def test_stdio_with_a_token_that_expires_says_so(
    server: ServerProcess, api: httpx.AsyncClient
) -> None:
    """A token valid when the stdio server starts expires while it runs. How long the
    child takes to start is the machine's business: a token that expired before the
    child could check it is tried again with a longer life."""
    owner = await owner_with_business(api, "Warung MCP")
    for lifetime in (5, 15, 45, 135):
        text = await _call_after_expiry(server, owner, lifetime)
        if text is not None:
            assert "TELATEN_ACCESS_TOKEN" in text and "fresh token" in text, text
            return
    pytest.fail("the stdio server never started within a token's life")
