"""Deeply nested JSON: bounded on the way in (a person's input and a model's tool-call
arguments alike), and rows an older version stored over-deep still read as 200.

Past about 255 levels the response serializer (pydantic-core) gives up, so a stored
over-deep value made every read of it a 500; the limit here is far below that.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from app.core.jsonlimits import MAX_JSON_DEPTH, TOO_DEEP_MARKER, json_depth
from app.modules.business.models import BusinessProfile
from app.modules.chat.models import ChatMessage, MessageRole
from tests.conftest import asgi_client
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, Account, new_account
from tests.helpers.apps import chat_app
from tests.helpers.business import owner_with_business
from tests.helpers.sse import chat


@pytest.fixture(scope="module")
async def patient_ai_app(
    database_url: str, session_tmp: Path, fake_llm_server: FakeLLMServer
) -> AsyncIterator[FastAPI]:
    """The app with the fake LLM on the suite's database. A 20,000-level argument is also
    over the response size cap, which would end the turn before its depth is looked at:
    these tests are about the depth."""
    async with chat_app(
        database_url, session_tmp / "data", fake_llm_server, CHAT_MAX_RESPONSE_CHARS=1_000_000
    ) as application:
        yield application


@pytest.fixture
async def patient_client(patient_ai_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(patient_ai_app) as c:
        yield c


def nested(depth: int, leaf: Any = "dasar") -> dict[str, Any]:
    """A JSON object `depth` levels deep (an object in an object ...)."""
    value: Any = leaf
    for _ in range(depth):
        value = {"lapis": value}
    return value


def nested_text(depth: int) -> str:
    """The same as JSON text, built without recursion (json.dumps would hit Python's)."""
    return '{"lapis":' * depth + '"dasar"' + "}" * depth


async def store_ai_context(app: FastAPI, owner: Account, value: dict[str, Any]) -> None:
    """Write `value` straight into the row, as an older version would have stored it."""
    async with app.state.context.db.sessionmaker() as session:
        await session.execute(
            update(BusinessProfile)
            .where(BusinessProfile.user_id == uuid.UUID(owner.id))
            .values(ai_context=value)
        )
        await session.commit()


def test_depth_helper() -> None:
    assert json_depth("x") == 0 and json_depth({}) == 1 and json_depth([[], {"a": [1]}]) == 3
    assert json_depth(nested(MAX_JSON_DEPTH)) == MAX_JSON_DEPTH
    # Iterative: a value deeper than Python's recursion limit is measured, not a crash.
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    assert json_depth(deep) == 5000
    assert json_depth(deep, stop_after=40) == 41  # stops counting past the limit


async def test_ai_context_nesting_is_bounded(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    ok = {"resep": nested(MAX_JSON_DEPTH - 1)}  # exactly MAX_JSON_DEPTH levels
    r = await client.patch(f"{API}/business/me", headers=owner.headers, json={"ai_context": ok})
    assert r.status_code == 200, r.text
    assert r.json()["ai_context"] == ok

    for depth in (MAX_JSON_DEPTH + 1, 256, 300, 900):
        body = '{"ai_context": {"resep": ' + nested_text(depth - 1) + "}}"
        r = await client.patch(
            f"{API}/business/me",
            headers={**owner.headers, "Content-Type": "application/json"},
            content=body,
        )
        assert r.status_code == 422, (depth, r.text)
        assert f"{MAX_JSON_DEPTH} levels" in r.text
    # Deeper than the JSON parser recurses: refused as unreadable, not a 500.
    body = '{"ai_context": ' + nested_text(20_000) + "}"
    r = await client.patch(
        f"{API}/business/me",
        headers={**owner.headers, "Content-Type": "application/json"},
        content=body,
    )
    assert r.status_code in (400, 422), r.text
    r = await client.get(f"{API}/business/me", headers=owner.headers)
    assert r.status_code == 200 and r.json()["ai_context"] == ok


async def test_stored_over_deep_ai_context_reads_as_200(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await owner_with_business(client)
    await store_ai_context(app, owner, {"pemasok": "Pasar Induk", "catatan": nested(300)})
    r = await client.get(f"{API}/business/me", headers=owner.headers)
    assert r.status_code == 200, r.text
    context = r.json()["ai_context"]
    assert context["pemasok"] == "Pasar Induk"
    assert json_depth(context) <= MAX_JSON_DEPTH
    assert TOO_DEEP_MARKER in json.dumps(context)
    # Other changes to the profile still work, and answer the same safe value.
    r = await client.patch(f"{API}/business/me", headers=owner.headers, json={"stage": "growth"})
    assert r.status_code == 200, r.text
    assert r.json()["ai_context"] == context


async def test_the_advisor_updates_an_over_deep_stored_memory(
    patient_client: httpx.AsyncClient, patient_ai_app: FastAPI, fake_llm: FakeLLMServer
) -> None:
    """update_business_context merges into the stored memory; an over-deep one from an
    older version is cut down to the limit then, so the advisor is not stuck."""
    owner = await owner_with_business(patient_client)
    await store_ai_context(patient_ai_app, owner, {"catatan": nested(300)})
    fake_llm.script(
        Reply.tool_call("update_business_context", {"facts": {"pemasok": "Pasar Induk"}}),
        Reply.of_text("Sudah saya catat."),
    )
    s = await chat(patient_client, owner.headers, "Pemasok saya Pasar Induk")
    assert s.status == 200 and s.names[-1] == "done", s.events
    assert s.first("tool_result")["is_error"] is False, s.first("tool_result")
    r = await patient_client.get(f"{API}/business/me", headers=owner.headers)
    assert r.status_code == 200
    context = r.json()["ai_context"]
    assert context["pemasok"] == "Pasar Induk" and json_depth(context) <= MAX_JSON_DEPTH
    async with patient_ai_app.state.context.db.sessionmaker() as session:
        stored = await session.scalar(
            select(BusinessProfile.ai_context).where(BusinessProfile.user_id == uuid.UUID(owner.id))
        )
    assert json_depth(stored) <= MAX_JSON_DEPTH  # the row itself is cut down now


@pytest.mark.slow
async def test_over_deep_tool_arguments_are_an_error_result(
    patient_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(patient_client)
    for depth in (MAX_JSON_DEPTH + 1, 300, 20_000):
        fake_llm.script(
            Reply.tool_call("get_my_account", '{"x": ' + nested_text(depth - 1) + "}"),
            Reply.of_text("Maaf, saya coba lagi nanti."),
        )
        s = await chat(patient_client, owner.headers, f"Akun saya? ({depth})")
        assert s.status == 200, s.body
        assert s.names[-1] == "done", s.events
        call, result = s.first("tool_call"), s.first("tool_result")
        assert result["is_error"] is True
        assert f"{MAX_JSON_DEPTH} levels" in result["output"]
        assert owner.email not in result["output"]  # the tool did not run
        assert json_depth(call["arguments"]) <= MAX_JSON_DEPTH
        sid = s.first("session")["session_id"]
        r = await patient_client.get(f"{API}/chat/sessions/{sid}/messages", headers=owner.headers)
        assert r.status_code == 200, r.text
        assert json_depth(r.json()["items"]) <= MAX_JSON_DEPTH + 4  # page, item, calls


async def test_stored_over_deep_tool_calls_read_as_200(
    patient_client: httpx.AsyncClient, patient_ai_app: FastAPI, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(patient_client)
    s = await chat(patient_client, owner.headers, "Halo")
    sid = uuid.UUID(s.first("session")["session_id"])
    async with patient_ai_app.state.context.db.sessionmaker() as session:
        session.add(
            ChatMessage(
                session_id=sid,
                role=MessageRole.TOOL,
                content="lama",
                tool_calls={"id": "call_1", "name": "x", "arguments": nested(300)},
            )
        )
        await session.commit()
    r = await patient_client.get(f"{API}/chat/sessions/{sid}/messages", headers=owner.headers)
    assert r.status_code == 200, r.text
    old = next(m for m in r.json()["items"] if m["role"] == "tool")
    assert old["tool_calls"]["id"] == "call_1"
    assert json_depth(old["tool_calls"]) <= MAX_JSON_DEPTH + 2
    assert TOO_DEEP_MARKER in json.dumps(old["tool_calls"])
