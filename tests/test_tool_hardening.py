"""The domain tools under faults and revocation, through the chat turn and the MCP server:
an unexpected database error leaves only a fixed message with the request id (the details
go to the log), and a user deactivated or signed out in the middle of a turn makes the
turn's tools refuse.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import text

from tests.conftest import ADMIN_PASSWORD, asgi_client
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, Account, bearer, login
from tests.helpers.apps import calls_with, chat_app, wait_for
from tests.helpers.business import owner_with_business
from tests.helpers.databases import fresh_database_url
from tests.helpers.sse import chat

SALE = {"type": "income", "amount": 25000, "category": "Penjualan", "note": "es teh"}
# What must never reach a tool result: SQL, the schema's names, the driver and its classes.
LEAKS = (
    "INSERT",
    "SELECT",
    "transactions",
    "note_gone",
    "sqlalchemy",
    "sqlite",
    "asyncpg",
    "OperationalError",
    "ProgrammingError",
    "UndefinedColumn",
    "Traceback",
)


def assert_no_leak(output: str) -> None:
    for leak in LEAKS:
        assert leak.lower() not in output.lower(), (leak, output)


# --- item 11: an unexpected database error in a tool ------------------------------------------


async def test_a_database_error_in_a_tool_leaves_a_fixed_message_with_the_request_id(
    tmp_path: Path, fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A throw-away database whose `transactions.note` column is renamed behind the
    service's back: record_transaction fails on a real database error, through a chat
    turn and through the MCP server at /mcp. Neither result carries SQL, table names or
    exception classes; both carry the request id; the log has the details."""
    async with (
        fresh_database_url(tmp_path, "toolfail") as url,
        chat_app(url, tmp_path / "data", fake_llm) as app,
        asgi_client(app) as c,
    ):
        owner = await owner_with_business(c)
        async with app.state.context.db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE transactions RENAME COLUMN note TO note_gone"))
        # The app configured logging as it started, which took pytest's capture off.
        logging.getLogger().addHandler(caplog.handler)

        fake_llm.script(Reply.tool_call("record_transaction", SALE), Reply.of_text("Maaf, Bu."))
        headers = {**owner.headers, "X-Request-ID": "chat-tool-failure-1"}
        s = await chat(c, headers, "Catat es teh 25 ribu")
        assert s.names[-1] == "done", s.events
        result = s.first("tool_result")
        assert result["is_error"] is True
        assert result["output"].startswith(
            "Error: the tool failed on our side (request id chat-tool-failure-1)"
        )
        assert_no_leak(result["output"])
        sent = next(m for m in fake_llm.requests[1]["messages"] if m["role"] == "tool")
        assert sent["content"] == result["output"]  # the model read the same

        mcp_output = await mcp_tool_error(app, owner, "mcp-tool-failure-1")
        assert "the tool failed on our side (request id mcp-tool-failure-1)" in mcp_output
        assert_no_leak(mcp_output)

    logging.getLogger().removeHandler(caplog.handler)
    # The details are in the log, under each request's id.
    logged = {
        r.msg.get("request_id"): r
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "tool_crashed"
    }
    assert set(logged) == {"chat-tool-failure-1", "mcp-tool-failure-1"}
    for record in logged.values():
        assert record.exc_info is not None and "note" in str(record.exc_info[1])


async def mcp_tool_error(app: FastAPI, owner: Account, request_id: str) -> str:
    """Call record_transaction over /mcp (Streamable HTTP, in process) as `owner`; the
    error text of its result."""
    headers = {**bearer(owner.access_token), "X-Request-ID": request_id}
    transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 40000))
    async with (
        httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers, timeout=30
        ) as http,
        streamable_http_client("http://testserver/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("record_transaction", SALE)
    assert result.is_error
    return result.content[0].text  # type: ignore[union-attr]


# --- item 15: the account is checked at every tool call ---------------------------------------


async def admin_headers(client: httpx.AsyncClient, app: FastAPI) -> dict[str, str]:
    r = await login(client, app.state.context.settings.FIRST_ADMIN_EMAIL, ADMIN_PASSWORD)
    assert r.status_code == 200, r.text
    client.cookies.clear()
    return bearer(r.json()["access_token"])


async def deactivate(client: httpx.AsyncClient, app: FastAPI, owner: Account) -> None:
    headers = await admin_headers(client, app)
    r = await client.patch(
        f"{API}/admin/users/{owner.id}", headers=headers, json={"is_active": False}
    )
    assert r.status_code == 200 and r.json()["is_active"] is False


async def change_password(client: httpx.AsyncClient, app: FastAPI, owner: Account) -> None:
    r = await client.post(
        f"{API}/auth/me/password",
        headers=owner.headers,
        json={"current_password": owner.password, "new_password": "Kata-Sandi-Baru-456"},
    )
    assert r.status_code == 200, r.text
    client.cookies.clear()
    owner.password = "Kata-Sandi-Baru-456"


async def reactivate(client: httpx.AsyncClient, app: FastAPI, owner: Account) -> None:
    headers = await admin_headers(client, app)
    r = await client.patch(
        f"{API}/admin/users/{owner.id}", headers=headers, json={"is_active": True}
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("revoke", "restore"),
    [(deactivate, reactivate), (change_password, None)],
    ids=["deactivated", "password-changed"],
)
async def test_a_turn_whose_account_is_revoked_mid_turn_records_nothing(
    database_url: str,
    session_tmp: Path,
    fake_llm: FakeLLMServer,
    revoke: Any,
    restore: Any,
) -> None:
    """The model's first tool call arrives after an admin deactivated the user (or the
    user changed the password, ending every session): the tool refuses, the model is
    told, and nothing is recorded."""
    gate = threading.Event()
    async with (
        chat_app(database_url, session_tmp / "data-revoke", fake_llm) as app,
        asgi_client(app) as c,
    ):
        owner = await owner_with_business(c)
        marker = f"revoke-{owner.id}"
        fake_llm.script(
            Reply.tool_call(
                "record_transaction", SALE, stall_after_chunks=1, resume=gate, match=marker
            ),
            Reply.of_text("Maaf, akun Ibu tidak aktif.", match=marker),
        )
        try:
            turn = asyncio.create_task(chat(c, owner.headers, f"{marker} catat es teh"))
            await wait_for(lambda: calls_with(fake_llm, marker), "the model call")
            await revoke(c, app, owner)
        finally:
            gate.set()
        s = await turn
        assert s.status == 200 and s.names[-1] == "done", s.events
        result = s.first("tool_result")
        assert result["is_error"] is True
        assert "deactivated or signed out" in result["output"]
        if restore is not None:
            await restore(c, app, owner)
        r = await login(c, owner.email, owner.password)
        assert r.status_code == 200, r.text
        fresh = bearer(r.json()["access_token"])
        r = await c.get(f"{API}/finance/transactions", headers=fresh)
        assert r.status_code == 200 and r.json()["total"] == 0
        r = await c.get(f"{API}/gamification/me", headers=fresh)
        assert r.json()["total_points"] == 0
        sent = calls_with(fake_llm, marker)[-1].body["messages"]
        assert any(  # the model was told
            m["role"] == "tool" and "deactivated or signed out" in m["content"] for m in sent
        )
