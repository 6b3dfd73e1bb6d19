"""Chat under abuse: a model response that calls too many tools or streams too much.

Every test runs the real app over ASGI against the fake OpenAI-compatible server;
nothing is mocked.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import asgi_client
from tests.fakes.llm_server import FakeLLMServer, Reply, ToolCallSpec
from tests.helpers.accounts import API, Account, new_account
from tests.helpers.apps import chat_app, wait_for
from tests.helpers.sse import chat

# --- item 14: tool calls per response, and the size a response may stream --------------------


async def transactions_total(client: httpx.AsyncClient, owner: Account) -> int:
    r = await client.get(f"{API}/finance/transactions", headers=owner.headers)
    assert r.status_code == 200, r.text
    return r.json()["total"]


async def owner_with_business(client: httpx.AsyncClient) -> Account:
    owner = await new_account(client)
    r = await client.post(
        f"{API}/business", headers=owner.headers, json={"name": "Warung Batas", "category": "K"}
    )
    assert r.status_code == 201, r.text
    return owner


@pytest.fixture(scope="module")
async def patient_client(
    database_url: str, session_tmp: Path, fake_llm_server: FakeLLMServer
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose LLM timeout is long: streaming a response of 100,000
    characters with the fake LLM in this process may pause longer than the suite's 1.5 s
    on a busy machine, which would be a (correct) timeout instead of the limit tested."""
    async with (
        chat_app(database_url, session_tmp / "data-patient", fake_llm_server) as app,
        asgi_client(app) as client,
    ):
        yield client


def sale(n: int) -> ToolCallSpec:
    arguments = {"type": "income", "amount": 1000 + n, "category": "Penjualan"}
    return ToolCallSpec("record_transaction", json.dumps(arguments))


async def test_calls_beyond_the_per_response_limit_are_not_run_and_the_model_is_told(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    """12 sales in one response: the first 8 (CHAT_MAX_TOOL_CALLS_PER_RESPONSE) are
    recorded, the other 4 answered with an error result, and the model carries on."""
    owner = await owner_with_business(ai_client)
    fake_llm.script(Reply(tool_calls=[sale(n) for n in range(12)]), Reply.of_text("Sebagian."))
    s = await chat(ai_client, owner.headers, "Catat 12 penjualan ini")
    assert s.names[-1] == "done", s.events
    results = s.all("tool_result")
    assert len(s.all("tool_call")) == len(results) == 12
    assert [r["is_error"] for r in results] == [False] * 8 + [True] * 4
    assert all("not run" in r["output"] and "at most 8" in r["output"] for r in results[8:])
    assert await transactions_total(ai_client, owner) == 8
    answered = [m for m in fake_llm.requests[1]["messages"] if m["role"] == "tool"]
    assert len(answered) == 12  # every call of the response has its result


async def test_a_response_streaming_100_tool_calls_ends_the_turn_and_runs_none(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    fake_llm.script(Reply(tool_calls=[sale(n) for n in range(100)]))
    started = time.perf_counter()
    s = await chat(ai_client, owner.headers, "Catat 100 penjualan")
    print(f"100 tool calls in one response: turn took {time.perf_counter() - started:.2f} s")
    assert s.names == ["session", "error"], s.names
    assert s.first("error")["code"] == "llm_too_many_tool_calls"
    assert await transactions_total(ai_client, owner) == 0
    assert len(fake_llm.requests) == 1  # the turn ended there


async def test_a_multi_megabyte_tool_argument_ends_the_turn_as_it_streams(
    patient_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    """A 2 MB argument in 16-character chunks: the turn ends once the response passes
    CHAT_MAX_RESPONSE_CHARS, long before the whole argument has streamed, and the
    connection to the model is closed rather than left streaming."""
    owner = await owner_with_business(patient_client)
    note = "x" * (2 * 1024 * 1024)
    arguments = {"type": "income", "amount": 5000, "category": "Penjualan", "note": note}
    # A pause between chunks lets the fake notice a hang-up (the whole would take minutes).
    fake_llm.script(Reply.tool_call("record_transaction", arguments, chunk_delay=0.0005))
    started = time.perf_counter()
    s = await chat(patient_client, owner.headers, "Catat ini")
    print(f"2 MB tool argument: turn took {time.perf_counter() - started:.2f} s")
    assert s.names == ["session", "error"], s.names
    assert s.first("error")["code"] == "llm_response_too_large"
    call = fake_llm.calls[-1]
    await wait_for(lambda: call.finished, "the model's stream to be closed", bound=30)
    assert await transactions_total(patient_client, owner) == 0
    items = (
        await patient_client.get(
            f"{API}/chat/sessions/{s.first('session')['session_id']}/messages",
            headers=owner.headers,
        )
    ).json()["items"]
    assert [(m["role"], m["status"], m["error_code"]) for m in items] == [
        ("user", "complete", None),
        ("assistant", "error", "llm_response_too_large"),
    ]


async def test_a_reply_text_past_the_limit_ends_the_turn_and_keeps_the_part_sent(
    patient_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(patient_client)
    limit = 100_000  # CHAT_MAX_RESPONSE_CHARS's default
    fake_llm.script(Reply.of_text("y" * (3 * limit), chunk_size=32))
    started = time.perf_counter()
    s = await chat(patient_client, owner.headers, "Tulis panjang sekali")
    print(f"reply of {3 * limit} chars: turn took {time.perf_counter() - started:.2f} s")
    assert s.names[-1] == "error" and s.first("error")["code"] == "llm_response_too_large"
    assert 0 < len(s.text) <= limit
    items = (
        await patient_client.get(
            f"{API}/chat/sessions/{s.first('session')['session_id']}/messages",
            headers=owner.headers,
        )
    ).json()["items"]
    assert items[-1]["status"] == "partial" and items[-1]["content"] == s.text
