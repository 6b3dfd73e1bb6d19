"""Chat under abuse and faults: per-user limits on parallel streams and on turns, the
pool exhausted ("busy", not "database unavailable"), a model response that calls too many
tools or streams too much, and the stream claim of a process that died.

Every test runs the real app (over ASGI, or a real `telaten serve`) against the fake
OpenAI-compatible server; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import asgi_client
from tests.fakes.llm_server import FakeLLMServer, Reply, ToolCallSpec
from tests.helpers.accounts import API, Account, new_account
from tests.helpers.apps import calls_with, chat_app, wait_for
from tests.helpers.business import owner_with_business
from tests.helpers.server import ServerProcess, served_env
from tests.helpers.sse import chat

CLIENT_CHAT = "/client/v1/chat/completion"
BUSY = "The service is busy; please retry shortly."


def assert_retry_after(r_headers: httpx.Headers, most: float) -> int:
    value = int(r_headers["retry-after"])
    assert 1 <= value <= most
    return value


async def client_chat(client: httpx.AsyncClient, owner: Account, content: str) -> httpx.Response:
    """The web client's chat call (its answer read whole)."""
    return await client.post(CLIENT_CHAT, json={"content": content}, headers=owner.headers)


# --- item 4: per-user limits; other users keep being served ---------------------------------


async def test_a_burst_of_streams_from_one_user_is_limited_and_others_are_served(
    database_url: str, session_tmp: Path, fake_llm: FakeLLMServer
) -> None:
    """One user opens 20 streams at once: 2 run (their replies held open), 18 are a JSON
    429 with Retry-After before any stream starts. Meanwhile another user's requests and
    chat turns are answered, with a pool of ONE connection on PostgreSQL: the two open
    streams hold no pooled connection while they wait on the model."""
    gate = threading.Event()
    async with (
        chat_app(
            database_url,
            session_tmp / "data-burst",
            fake_llm,
            CHAT_MAX_PARALLEL_STREAMS=2,
            CHAT_TURNS_PER_WINDOW=1000,
            DB_POOL_SIZE=1,
            DB_MAX_OVERFLOW=0,
            DB_POOL_TIMEOUT=10,
        ) as app,
        asgi_client(app) as c,
        asgi_client(app) as other,
    ):
        greedy, bystander = await new_account(c), await new_account(other)
        fake_llm.script(
            *(
                Reply.of_text("jawaban ditahan", stall_after_chunks=2, resume=gate, match="burst-A")
                for _ in range(20)
            )
        )
        try:
            burst = [
                asyncio.create_task(chat(c, greedy.headers, f"burst-A {n}")) for n in range(20)
            ]
            # The refusals come back while the admitted streams are held open.
            await wait_for(lambda: sum(t.done() for t in burst) >= 18, "the refusals")
            await wait_for(lambda: len(calls_with(fake_llm, "burst-A")) >= 2, "2 streams")
            refused = [t.result() for t in burst if t.done()]
            assert len(refused) == 18 and {s.status for s in refused} == {429}
            for s in refused:
                assert "at once" in s.body["detail"]
            # The web client's stream is refused the same way, before it starts.
            r = await client_chat(c, greedy, "burst-A web")
            assert r.status_code == 429
            assert r.headers["content-type"].startswith("application/json")
            assert r.json()["message"]
            assert_retry_after(r.headers, 30)
            assert len(calls_with(fake_llm, "burst-A")) == 2  # nothing else reached it

            # The other user is served meanwhile: plain requests and a whole turn.
            fake_llm.script(Reply.of_text("Untuk Bu B.", match="bystander-turn"))
            for path in ("/auth/me", "/chat/sessions", "/gamification/leaderboard"):
                r = await other.get(API + path, headers=bystander.headers)
                assert r.status_code == 200, (path, r.status_code, r.text)
            s = await chat(other, bystander.headers, "bystander-turn")
            assert s.status == 200 and s.names[-1] == "done" and s.text == "Untuk Bu B."
        finally:
            gate.set()
        admitted = [await t for t in burst if not t.done() or t.result().status == 200]
        assert len(admitted) == 2
        assert all(s.names[-1] == "done" for s in admitted)
        # Their places are free again: the next turn runs.
        fake_llm.script(Reply.of_text("lagi", match="burst-A again"))
        s = await chat(c, greedy.headers, "burst-A again")
        assert s.status == 200 and s.names[-1] == "done"


async def test_turns_per_window_are_limited_per_user(
    database_url: str, session_tmp: Path, fake_llm: FakeLLMServer
) -> None:
    """At most CHAT_TURNS_PER_WINDOW turns per user per window, on both chat endpoints,
    also when they arrive at once; refusals are 429 with Retry-After before the stream,
    reach no model and save nothing; other users are not affected."""
    async with (
        chat_app(
            database_url,
            session_tmp / "data-window",
            fake_llm,
            CHAT_MAX_PARALLEL_STREAMS=50,
            CHAT_TURNS_PER_WINDOW=5,
            CHAT_TURN_WINDOW_SECONDS=3600,
        ) as app,
        asgi_client(app) as c,
    ):
        owner, other = await new_account(c), await new_account(c)
        burst = await asyncio.gather(*(chat(c, owner.headers, f"window-A {n}") for n in range(12)))
        assert {s.status for s in burst} <= {200, 429}
        ok = sum(s.status == 200 for s in burst)
        assert 1 <= ok <= 5
        for s in burst:
            if s.status == 200:
                assert s.names[-1] == "done"
        # Fill the window one turn at a time, on either endpoint, until refused.
        for n in range(10):
            if n % 2:
                r = await client_chat(c, owner, f"window-A more {n}")
                status, detail = r.status_code, (r.json() if r.status_code != 200 else {})
            else:
                s = await chat(c, owner.headers, f"window-A more {n}")
                status, detail = s.status, s.body
            if status == 429:
                break
            assert status == 200
            ok += 1
        assert ok == 5 and status == 429
        assert "5 messages" in detail["detail"]
        for refused in (
            await c.post(
                f"{API}/chat/stream", json={"content": "window-A no"}, headers=owner.headers
            ),
            await client_chat(c, owner, "window-A no"),
        ):
            assert refused.status_code == 429
            assert_retry_after(refused.headers, 3600)
        assert len(calls_with(fake_llm, "window-A")) == 5
        sessions = await c.get(f"{API}/chat/sessions", headers=owner.headers)
        assert sessions.json()["total"] == 5
        # Another user has a window of their own.
        s = await chat(c, other.headers, "window-B")
        assert s.status == 200 and s.names[-1] == "done"


@pytest.mark.postgres_only
async def test_an_exhausted_pool_is_busy_not_database_unavailable(
    database_url: str, session_tmp: Path, fake_llm: FakeLLMServer
) -> None:
    """Every pooled connection in use for longer than DB_POOL_TIMEOUT: 503 "busy" with
    Retry-After, on the API, the chat stream and the web client's API alike.

    (SQLite's engine has SQLAlchemy's default queue pool, 5 + 10 overflow with a 30 s
    timeout, which the DB_POOL_* settings do not change: this runs on PostgreSQL.)"""
    async with (
        chat_app(
            database_url,
            session_tmp / "data-busy",
            fake_llm,
            DB_POOL_SIZE=1,
            DB_MAX_OVERFLOW=0,
            DB_POOL_TIMEOUT=0.5,
        ) as app,
        asgi_client(app) as c,
    ):
        owner = await new_account(c)
        async with app.state.context.db.engine.connect() as held:  # the pool's only connection
            await held.execute(text("SELECT 1"))
            answers = [
                await c.get(f"{API}/auth/me", headers=owner.headers),
                await c.post(f"{API}/chat/stream", json={"content": "halo"}, headers=owner.headers),
                await c.get("/client/v1/auth/me", headers=owner.headers),
            ]
        for r in answers:
            assert r.status_code == 503, r.text
            assert r.json()["detail"] == BUSY
            assert_retry_after(r.headers, 30)
        assert answers[2].json()["message"] == BUSY
        assert (await c.get(f"{API}/auth/me", headers=owner.headers)).status_code == 200


# --- item 14: tool calls per response, and the size a response may stream --------------------


async def transactions_total(client: httpx.AsyncClient, owner: Account) -> int:
    r = await client.get(f"{API}/finance/transactions", headers=owner.headers)
    assert r.status_code == 200, r.text
    return r.json()["total"]


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
    owner = await owner_with_business(ai_client, "Warung Batas", category="K")
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
    owner = await owner_with_business(ai_client, "Warung Batas", category="K")
    fake_llm.script(Reply(tool_calls=[sale(n) for n in range(100)]))
    started = time.perf_counter()
    s = await chat(ai_client, owner.headers, "Catat 100 penjualan")
    print(f"100 tool calls in one response: turn took {time.perf_counter() - started:.2f} s")
    assert s.names == ["session", "error"], s.names
    assert s.first("error")["code"] == "llm_too_many_tool_calls"
    assert await transactions_total(ai_client, owner) == 0
    assert len(fake_llm.requests) == 1  # the turn ended there


@pytest.mark.slow
async def test_a_multi_megabyte_tool_argument_ends_the_turn_as_it_streams(
    patient_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    """A 2 MB argument in 16-character chunks: the turn ends once the response passes
    CHAT_MAX_RESPONSE_CHARS, long before the whole argument has streamed, and the
    connection to the model is closed rather than left streaming."""
    owner = await owner_with_business(patient_client, "Warung Batas", category="K")
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


# --- item 16: the stream claim is renewed while the turn runs, and lapses after a crash ------


CLAIM_SECONDS = 12


@pytest.mark.slow
async def test_a_killed_servers_stream_claim_lapses_soon_and_a_long_turn_keeps_its_claim(
    fake_llm: FakeLLMServer, database_url: str, workdir: Path
) -> None:
    """Server A streams a turn whose reply the model holds open for longer than the
    claim's time to live: server B (same database) still answers 409 for that session
    late in the turn. Then A is killed (SIGKILL, no cleanup): B answers the session's next
    turn with 200 within about the claim's time to live, not after the old 390 s."""
    env = served_env(
        database_url,
        workdir,
        fake_llm.base_url,
        LLM_TIMEOUT_SECONDS="300",
        REGISTER_MAX_PER_CLIENT="1000",
        # A shorter claim than the default 30 s keeps the test short; it is renewed every
        # 4 s, with room for a slow machine.
        CHAT_STREAM_CLAIM_SECONDS=str(CLAIM_SECONDS),
    )
    held = threading.Event()
    a, b = ServerProcess(env, workdir), ServerProcess(env, workdir)
    try:
        await asyncio.gather(*(asyncio.to_thread(s.wait_ready, 120) for s in (a, b)))
        async with (
            httpx.AsyncClient(base_url=a.base_url, timeout=60) as ca,
            httpx.AsyncClient(base_url=b.base_url, timeout=60) as cb,
        ):
            owner = await new_account(ca)
            fake_llm.script(Reply.of_text("Pertama."))
            first = await chat(ca, owner.headers, "Halo")
            session_id = first.first("session")["session_id"]
            fake_llm.script(
                Reply.of_text("jawaban yang lama sekali", stall_after_chunks=2, resume=held)
            )
            lines: list[str] = []

            async def long_turn() -> None:
                body = {"session_id": session_id, "content": "long-turn"}
                async with ca.stream(
                    "POST", f"{API}/chat/stream", json=body, headers=owner.headers
                ) as r:
                    assert r.status_code == 200
                    async for line in r.aiter_lines():
                        lines.append(line)

            turn = asyncio.create_task(long_turn())
            await wait_for(lambda: calls_with(fake_llm, "long-turn"), "the long turn")
            claimed = time.monotonic()
            # Past the claim's time to live (renewed meanwhile): still held, on B too.
            await asyncio.sleep(CLAIM_SECONDS + 3)
            busy = await chat(cb, owner.headers, "parallel", session_id)
            assert busy.status == 409, busy.body
            r = await cb.delete(f"{API}/chat/sessions/{session_id}", headers=owner.headers)
            assert r.status_code == 409
            assert not turn.done()
            assert any(line.startswith("event: delta") for line in lines)

            a.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.to_thread(a.proc.wait, 30)
            with pytest.raises(httpx.HTTPError):
                await turn
            fake_llm.script(Reply.of_text("Sudah kembali.", match="after-kill"))
            while True:
                s = await chat(cb, owner.headers, "after-kill", session_id)
                if s.status != 409:
                    break
                assert time.monotonic() - killed < 90, "the dead stream's claim never lapsed"
                await asyncio.sleep(1)
            waited = time.monotonic() - killed
            print(f"claim lapsed {waited:.1f} s after the kill ({killed - claimed:.0f} s in)")
            assert s.status == 200 and s.names[-1] == "done" and s.text == "Sudah kembali."
            items = (
                await cb.get(f"{API}/chat/sessions/{session_id}/messages", headers=owner.headers)
            ).json()["items"]
            assert [m["content"] for m in items if m["role"] == "user"] == [
                "Halo",
                "long-turn",
                "after-kill",
            ]
    finally:
        held.set()
        for server in (a, b):
            server.stop()
