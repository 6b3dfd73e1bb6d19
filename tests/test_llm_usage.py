"""Token usage per chat turn: saved with the assistant's message, summed per user and UTC
day for admins (`GET /admin/llm-usage`), and migration 0008 that holds it.

The fake LLM server ends every streamed response with a usage chunk of 10 prompt and 5
completion tokens when the request asks for one (`stream_options.include_usage`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import Connection, inspect, text, update

from app.db.migrate import current_revision, head_revision
from app.main import create_app
from app.modules.chat.models import ChatMessage
from tests.conftest import ADMIN_PASSWORD, asgi_client, llm_settings, make_settings
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, Account, bearer, login, new_account
from tests.helpers.databases import fresh_database_url
from tests.helpers.migrations import (
    fresh_database,
    insert_old_user,
    migrate,
    rows,
    stored_ids,
    stored_time,
)
from tests.helpers.sse import ChatStream, chat

USAGE_URL = f"{API}/admin/llm-usage"


async def messages(
    client: httpx.AsyncClient, account: Account, stream: ChatStream
) -> list[dict[str, Any]]:
    session_id = stream.first("session")["session_id"]
    r = await client.get(f"{API}/chat/sessions/{session_id}/messages", headers=account.headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def admin_headers(client: httpx.AsyncClient, app: FastAPI) -> dict[str, str]:
    r = await login(client, app.state.context.settings.FIRST_ADMIN_EMAIL, ADMIN_PASSWORD)
    assert r.status_code == 200, r.text
    client.cookies.clear()
    return bearer(r.json()["access_token"])


def no_usage_reply(text_: str) -> Reply:
    """A streamed answer from a server that never sends token usage."""
    return Reply.of_chunks(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text_}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    )


# --- per turn ---------------------------------------------------------------------------


async def test_a_plain_turn_saves_its_tokens_on_the_reply(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(Reply.of_text("Halo Bu!"))
    s = await chat(ai_client, owner.headers, "Halo Reka")
    assert s.names[-1] == "done", s.events
    assert fake_llm.requests[0]["stream_options"] == {"include_usage": True}
    user, reply = await messages(ai_client, owner, s)
    assert (user["prompt_tokens"], user["completion_tokens"]) == (None, None)
    assert reply["role"] == "assistant" and reply["id"] == s.first("message")["message_id"]
    assert (reply["prompt_tokens"], reply["completion_tokens"]) == (10, 5)


async def test_a_turn_with_a_tool_call_sums_both_responses(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(Reply.tool_call("get_my_account", {}), Reply.of_text("Sudah saya cek."))
    s = await chat(ai_client, owner.headers, "Cek akun saya")
    assert s.names[-1] == "done", s.events
    items = await messages(ai_client, owner, s)
    assert [m["role"] for m in items] == ["user", "tool", "assistant"]
    assert items[1]["prompt_tokens"] is None  # tool rows carry no tokens
    assert (items[2]["prompt_tokens"], items[2]["completion_tokens"]) == (20, 10)


async def test_a_failed_turn_keeps_the_tokens_it_spent(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(Reply.tool_call("get_my_account", {}), Reply.error(500))
    s = await chat(ai_client, owner.headers, "Cek akun saya")
    assert s.first("error")["code"] == "llm_unavailable"
    reply = (await messages(ai_client, owner, s))[-1]
    assert reply["role"] == "assistant" and reply["status"] == "error"
    assert (reply["prompt_tokens"], reply["completion_tokens"]) == (10, 5)


async def test_a_server_without_usage_leaves_the_tokens_null(
    ai_client: httpx.AsyncClient, ai_app: FastAPI, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(no_usage_reply("Halo tanpa hitungan."))
    s = await chat(ai_client, owner.headers, "Halo")
    assert s.names[-1] == "done" and s.text == "Halo tanpa hitungan.", s.events
    reply = (await messages(ai_client, owner, s))[-1]
    assert reply["status"] == "complete"
    assert (reply["prompt_tokens"], reply["completion_tokens"]) == (None, None)
    # Nothing to sum: the turn is not in the admins' report at all.
    r = await ai_client.get(
        USAGE_URL,
        params={"user_id": owner.id},
        headers=await admin_headers(ai_client, ai_app),
    )
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [] and r.json()["total"] == 0
    assert r.json()["totals"] == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "turns": 0,
    }


async def test_huge_reported_usage_is_capped_and_the_reply_still_saved(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    """Each response may claim the most an INTEGER holds; their sum is capped there
    instead of failing the save."""
    owner = await new_account(ai_client)
    huge = {"prompt_tokens": 2**31 - 1, "completion_tokens": 2**31 - 1}
    call = {"index": 0, "id": "call_1", "type": "function"}
    call["function"] = {"name": "get_my_account", "arguments": "{}"}
    fake_llm.script(
        Reply.of_chunks(
            {"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            {"choices": [], "usage": huge},
        ),
        Reply.of_chunks(
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Sudah."}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": huge},
        ),
    )
    s = await chat(ai_client, owner.headers, "Cek akun saya")
    assert s.names[-1] == "done", s.events
    reply = (await messages(ai_client, owner, s))[-1]
    assert (reply["prompt_tokens"], reply["completion_tokens"]) == (2**31 - 1, 2**31 - 1)


# --- per user and day, for admins -------------------------------------------------------


@pytest.fixture(scope="module")
def usage_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer.running() as server:
        yield server


@pytest.fixture(scope="module")
async def usage_app(
    tmp_path_factory: pytest.TempPathFactory, usage_llm: FakeLLMServer
) -> AsyncIterator[FastAPI]:
    """An app with a fake LLM of its own on a database of its own, so sums are exact."""
    tmp = tmp_path_factory.mktemp("usage")
    async with fresh_database_url(tmp, "usage") as url:
        application = create_app(make_settings(url, tmp / "data", **llm_settings(usage_llm)))
        async with LifespanManager(application, startup_timeout=60, shutdown_timeout=30):
            yield application


async def _move(app: FastAPI, message_id: str, at: datetime) -> None:
    async with app.state.context.db.sessionmaker() as session:
        await session.execute(
            update(ChatMessage).where(ChatMessage.id == uuid.UUID(message_id)).values(created_at=at)
        )
        await session.commit()


def _row(day: date, account: Account, prompt: int, completion: int, turns: int) -> dict[str, Any]:
    return {
        "date": day.isoformat(),
        "user_id": account.id,
        "email": account.email,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "turns": turns,
    }


async def test_admins_see_tokens_summed_per_user_and_utc_day(
    usage_app: FastAPI, usage_llm: FakeLLMServer
) -> None:
    fake = usage_llm
    async with asgi_client(usage_app) as client:
        admin = await admin_headers(client, usage_app)
        ani, budi = await new_account(client), await new_account(client)
        fake.script(
            Reply.of_text("Satu."),  # Ani, today
            Reply.tool_call("get_my_account", {}),  # Ani, today: two responses
            Reply.of_text("Dua."),
            Reply.of_text("Kemarin."),  # Ani, moved to yesterday's last moment
            Reply.of_text("Lama."),  # Ani, moved to the day before the last seven
            Reply.of_text("Budi."),  # Budi, today
            no_usage_reply("Tanpa hitungan."),  # Budi, today, no usage: not counted
        )
        turns = [
            await chat(client, who.headers, content)
            for who, content in [
                (ani, "pertama"),
                (ani, "cek akun"),
                (ani, "kemarin"),
                (ani, "lama"),
                (budi, "halo"),
                (budi, "tanpa usage"),
            ]
        ]
        assert all(s.names[-1] == "done" for s in turns), [s.names for s in turns]
        ids = [s.first("message")["message_id"] for s in turns]

        for _attempt in range(2):  # once more if UTC midnight passed in between
            today = datetime.now(UTC).date()
            midnight = datetime.combine(today, time(), UTC)
            for message_id in (ids[0], ids[1], ids[4], ids[5]):
                await _move(usage_app, message_id, midnight + timedelta(hours=1))
            await _move(usage_app, ids[2], midnight - timedelta(microseconds=1))
            await _move(usage_app, ids[3], midnight - timedelta(days=6, hours=1))
            r = await client.get(USAGE_URL, headers=admin)
            assert r.status_code == 200, r.text
            if r.json()["end"] == today.isoformat():
                break
        yesterday = today - timedelta(days=1)
        week = r.json()
        assert week["start"] == (today - timedelta(days=6)).isoformat()
        assert week["end"] == today.isoformat()
        assert week["items"] == [
            _row(today, ani, 30, 15, 2),
            _row(today, budi, 10, 5, 1),
            _row(yesterday, ani, 10, 5, 1),
        ]
        assert week["total"] == 3 and (week["limit"], week["offset"]) == (100, 0)
        assert week["totals"] == {
            "prompt_tokens": 50,
            "completion_tokens": 25,
            "total_tokens": 75,
            "turns": 4,
        }

        r = await client.get(USAGE_URL, params={"days": 1}, headers=admin)
        assert [(i["email"], i["total_tokens"]) for i in r.json()["items"]] == [
            (ani.email, 45),
            (budi.email, 15),
        ]
        assert r.json()["start"] == today.isoformat()

        r = await client.get(USAGE_URL, params={"days": 8}, headers=admin)
        assert r.json()["items"][-1] == _row(today - timedelta(days=7), ani, 10, 5, 1)
        assert r.json()["totals"]["turns"] == 5

        r = await client.get(USAGE_URL, params={"user_id": budi.id}, headers=admin)
        assert r.json()["items"] == [_row(today, budi, 10, 5, 1)]
        assert r.json()["totals"]["total_tokens"] == 15

        r = await client.get(USAGE_URL, params={"limit": 1, "offset": 1}, headers=admin)
        page = r.json()
        assert page["items"] == [_row(today, budi, 10, 5, 1)] and page["total"] == 3
        assert page["totals"]["turns"] == 4  # the sums cover the range, not the page


async def test_llm_usage_is_for_admins_only(usage_app: FastAPI) -> None:
    async with asgi_client(usage_app) as client:
        owner = await new_account(client)
        assert (await client.get(USAGE_URL)).status_code == 401
        r = await client.get(USAGE_URL, headers=owner.headers)
        assert r.status_code == 403 and "detail" in r.json()
        admin = await admin_headers(client, usage_app)
        for bad in ("0", "91", "-1", "seven", "1.5"):
            r = await client.get(USAGE_URL, params={"days": bad}, headers=admin)
            assert r.status_code == 422, (bad, r.text)
        for bad_params in ({"user_id": "not-a-uuid"}, {"limit": "0"}, {"offset": "-1"}):
            r = await client.get(USAGE_URL, params=bad_params, headers=admin)
            assert r.status_code == 422, (bad_params, r.text)
        r = await client.get(USAGE_URL, params={"days": 90}, headers=admin)
        assert r.status_code == 200


# --- migration 0008 ---------------------------------------------------------------------


def _message_columns(conn: Connection) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns("chat_messages")}


def _message_indexes(conn: Connection) -> set[str]:
    return {i["name"] or "" for i in inspect(conn).get_indexes("chat_messages")}


def _seed_chat(conn: Connection) -> None:
    """A user with a session and an assistant reply, as 0007 keeps them."""
    user, session, message = stored_ids(conn, 3)
    now = stored_time(conn, datetime(2026, 1, 2, 3, 0, tzinfo=UTC))
    insert_old_user(conn, user, now)
    conn.execute(
        text(
            "INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at)"
            " VALUES (:id, :user, 'Lama', :now, :now)"
        ),
        {"id": session, "user": user, "now": now},
    )
    conn.execute(
        text(
            "INSERT INTO chat_messages (id, session_id, role, content, status, created_at)"
            " VALUES (:id, :session, 'assistant', 'Jawaban lama', 'complete', :now)"
        ),
        {"id": message, "session": session, "now": now},
    )


async def test_0008_adds_the_token_columns_and_removes_them_keeping_rows(
    tmp_path: Path,
) -> None:
    async with fresh_database(tmp_path, "mig8") as db:
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, "0007_limits")
            await conn.run_sync(_seed_chat)
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, "0008_token_usage")
            assert {"prompt_tokens", "completion_tokens"} <= await conn.run_sync(_message_columns)
            assert "ix_chat_messages_created_at" in await conn.run_sync(_message_indexes)
            found = await conn.run_sync(
                rows, "SELECT content, prompt_tokens, completion_tokens FROM chat_messages"
            )
            assert found == [("Jawaban lama", None, None)]
            await conn.execute(
                text("UPDATE chat_messages SET prompt_tokens = 7, completion_tokens = 3")
            )
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, "0007_limits", True)
            assert await conn.run_sync(current_revision) == "0007_limits"
            columns = await conn.run_sync(_message_columns)
            assert not {"prompt_tokens", "completion_tokens"} & columns
            assert "ix_chat_messages_created_at" not in await conn.run_sync(_message_indexes)
            found = await conn.run_sync(rows, "SELECT content FROM chat_messages")
            assert found == [("Jawaban lama",)]
            assert len(await conn.run_sync(rows, "SELECT id FROM chat_sessions")) == 1
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, "head")
            assert await conn.run_sync(current_revision) == head_revision()
