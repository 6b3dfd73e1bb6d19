"""AI roadmap generation, end to end: the app, its worker, the fake LLM server, a database.

Roadmap requests go to the fake's roadmap channel (requests offering `save_roadmap`).
Each test names its business uniquely and scripts replies with `match=` that name, so
a generation another test left running can never take them. Tests that need other
settings (a daily quota, a small connection pool) start an app of their own.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.main import create_app
from tests.conftest import asgi_client, llm_settings, make_settings
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, Account, new_account
from tests.helpers.business import ROADMAP_ENDED, roadmap_request
from tests.helpers.databases import fresh_database_url
from tests.helpers.server import ServerProcess, clean_env
from tests.helpers.sse import parse_sse

ROADMAP_DAILY_CAP = 250  # POINTS_ROADMAP_DAILY_CAP's default


def business_name() -> str:
    return f"Warung Uji {uuid.uuid4().hex[:8]}"


async def create_business(client: httpx.AsyncClient, owner: Account, name: str) -> None:
    r = await client.post(
        f"{API}/business",
        headers=owner.headers,
        json={"name": name, "category": "Kuliner", "primary_goal": "buka cabang kedua"},
    )
    assert r.status_code == 201, r.text


async def milestones(
    client: httpx.AsyncClient, owner: Account, **params: Any
) -> list[dict[str, Any]]:
    r = await client.get(
        f"{API}/milestones", headers=owner.headers, params={"limit": 100, **params}
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def complete_all(
    client: httpx.AsyncClient, owner: Account, items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Tick every task of `items`, in order; returns the outcomes."""
    outcomes = []
    for milestone in items:
        for task in milestone["tasks"]:
            r = await client.post(
                f"{API}/milestones/{milestone['id']}/tasks/{task['id']}/complete",
                headers=owner.headers,
            )
            assert r.status_code == 200, r.text
            outcomes.append(r.json())
    return outcomes


async def delete_all(
    client: httpx.AsyncClient, owner: Account, items: list[dict[str, Any]]
) -> None:
    for milestone in items:
        r = await client.delete(f"{API}/milestones/{milestone['id']}", headers=owner.headers)
        assert r.status_code == 204, r.text


def with_stall(reply: Reply, seconds: float) -> Reply:
    reply.stall_seconds = seconds
    return reply


def requests_for(fake: FakeLLMServer, name: str) -> list[dict[str, Any]]:
    return [b for b in fake.roadmap_requests if name in json.dumps(b, ensure_ascii=False)]


async def generate(
    client: httpx.AsyncClient, owner: Account, body: dict[str, Any] | None = None
) -> tuple[int, list[tuple[str, dict[str, Any]]], Any]:
    """POST /milestones/generate and read the whole event stream."""
    async with client.stream(
        "POST", f"{API}/milestones/generate", headers=owner.headers, json=body
    ) as r:
        raw = (await r.aread()).decode()
    if r.status_code != 200:
        return r.status_code, [], json.loads(raw)
    assert r.headers["content-type"].startswith("text/event-stream")
    return r.status_code, parse_sse(raw), None


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """`app` (with its lifespan) served over real HTTP by uvicorn in this process, on a
    free loopback port; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(60):
            while not server.started:
                if serving.done():
                    await serving  # startup failed: raise its error
                    raise AssertionError("the server stopped before it started")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


async def next_event(lines: AsyncIterator[str]) -> tuple[str, dict[str, Any]]:
    """The next event of a Server-Sent Events stream read line by line."""
    block: list[str] = []
    async for line in lines:
        if line:
            block.append(line)
            continue
        events = parse_sse("\n".join(block))
        if events:
            return events[0]
        block = []
    raise AssertionError("the stream ended")


# --- the first roadmap, and the next ------------------------------------------------------


async def test_profile_creation_leads_to_four_saved_milestones(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    name = business_name()
    fake_llm.script_roadmap(Reply.roadmap(4, match=name, title="Mulai"))
    owner = await new_account(ai_client)
    await create_business(ai_client, owner, name)

    generation = await roadmap_request(ai_client, owner)
    assert generation["kind"] == "initial"
    assert generation["status"] == "succeeded"
    assert generation["attempts"] == 1
    items = await milestones(ai_client, owner)
    assert [m["title"] for m in items] == [f"Mulai {n}" for n in range(1, 5)]
    for m in items:
        assert m["ai_generated"] is True
        assert m["status"] == "pending"
        assert m["tasks_total"] == 3 and m["tasks_done"] == 0
        assert m["reward_points"] == 20 * m["difficulty"]
        assert all(t["reward_points"] == 5 * m["difficulty"] for t in m["tasks"])

    # What the model was asked: structured output through one required tool call, with
    # the milestone count in the schema and the business in the context.
    (request,) = requests_for(fake_llm, name)
    assert request["tool_choice"] == "required"
    (tool,) = request["tools"]
    schema = tool["function"]["parameters"]["properties"]["milestones"]
    assert schema["minItems"] == schema["maxItems"] == 4
    context = request["messages"][1]["content"]
    assert name in context and "buka cabang kedua" in context and "pemasukan" in context


async def test_completing_the_last_milestone_leads_to_three_more(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    name = business_name()
    fake_llm.script_roadmap(
        Reply.roadmap(4, match=name, title="Awal"), Reply.roadmap(3, match=name, title="Lanjut")
    )
    owner = await new_account(ai_client)
    await create_business(ai_client, owner, name)
    await roadmap_request(ai_client, owner)
    first = await milestones(ai_client, owner)

    outcomes = await complete_all(ai_client, owner, first[:3])
    assert outcomes[-1]["milestone_completed"] is True
    assert outcomes[-1]["next_roadmap_requested"] is False  # one milestone is still active
    outcomes += await complete_all(ai_client, owner, first[3:])
    assert outcomes[-1]["milestone_completed"] is True
    assert outcomes[-1]["next_roadmap_requested"] is True

    generation = await roadmap_request(ai_client, owner)
    assert (generation["kind"], generation["status"]) == ("next", "succeeded")
    pending = await milestones(ai_client, owner, status="pending")
    assert [m["title"] for m in pending] == ["Lanjut 1", "Lanjut 2", "Lanjut 3"]
    assert len(await milestones(ai_client, owner)) == 7
    # The next roadmap follows from what was done.
    context = requests_for(fake_llm, name)[-1]["messages"][1]["content"]
    assert all(m["title"] in context for m in first)
    # Completing was paid exactly once (tasks 5 x difficulty, bonuses 20 x difficulty),
    # up to the day's cap: the award that crosses it is cut, the later ones pay nothing.
    me = (await ai_client.get(f"{API}/gamification/me", headers=owner.headers)).json()
    earned = sum(20 * m["difficulty"] + sum(t["reward_points"] for t in m["tasks"]) for m in first)
    assert earned > ROADMAP_DAILY_CAP
    paid = [o["points_awarded"] + o["bonus_awarded"] for o in outcomes]
    assert me["total_points"] == sum(paid) == ROADMAP_DAILY_CAP
    assert paid[-1] == 0


async def test_a_generated_milestone_pays_by_difficulty_a_self_made_one_the_base_rate(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    name = business_name()
    fake_llm.script_roadmap(Reply.roadmap(4, match=name))
    owner = await new_account(ai_client)
    await create_business(ai_client, owner, name)
    await roadmap_request(ai_client, owner)
    hardest = next(m for m in await milestones(ai_client, owner) if m["difficulty"] == 5)
    r = await ai_client.post(
        f"{API}/milestones",
        headers=owner.headers,
        json={"title": "Buatan sendiri", "difficulty": 5, "tasks": ["a", "b", "c"]},
    )
    assert r.status_code == 201, r.text
    own = r.json()
    assert own["ai_generated"] is False and own["reward_points"] == 20
    assert [t["reward_points"] for t in own["tasks"]] == [5, 5, 5]

    generated = await complete_all(ai_client, owner, [hardest])
    assert [o["points_awarded"] for o in generated] == [25, 25, 25]
    assert generated[-1]["milestone_completed"] is True and generated[-1]["bonus_awarded"] == 100
    made = await complete_all(ai_client, owner, [own])
    assert [o["points_awarded"] for o in made] == [5, 5, 5]
    assert made[-1]["milestone_completed"] is True and made[-1]["bonus_awarded"] == 20
    me = (await ai_client.get(f"{API}/gamification/me", headers=owner.headers)).json()
    assert me["total_points"] == 3 * 25 + 100 + 3 * 5 + 20


# --- bad answers --------------------------------------------------------------------------


async def test_malformed_and_partial_answers_are_retried_and_save_nothing_meanwhile(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    name = business_name()
    fake_llm.script_roadmap(
        Reply.tool_call("save_roadmap", '{"milestones": [{"title": "Setengah', match=name),
        Reply.roadmap(2, match=name),  # valid JSON, but half a roadmap
        with_stall(Reply.roadmap(4, match=name, title="Benar"), 0.5),
    )
    owner = await new_account(ai_client)
    await create_business(ai_client, owner, name)
    running = await roadmap_request(ai_client, owner, until={"running"} | ROADMAP_ENDED)
    if running["status"] == "running":
        assert await milestones(ai_client, owner) == []  # nothing half-saved
    generation = await roadmap_request(ai_client, owner)
    assert (generation["status"], generation["attempts"]) == ("succeeded", 3)
    assert [m["title"] for m in await milestones(ai_client, owner)] == [
        f"Benar {n}" for n in range(1, 5)
    ]
    # The rejected half roadmap was explained to the model before it tried again.
    last = requests_for(fake_llm, name)[-1]["messages"]
    assert last[-1]["role"] == "tool"
    assert "at least 4" in last[-1]["content"]


@pytest.mark.slow
async def test_answers_that_never_validate_end_as_a_reported_failure(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    name = business_name()
    fake_llm.script_roadmap(
        Reply.of_text("Berikut roadmap Anda: 1. Jualan online 2. ...", match=name),
        Reply.tool_call("save_roadmap", {"milestones": "semua"}, match=name),
        Reply(status=503, match=name),
    )
    owner = await new_account(ai_client)
    await create_business(ai_client, owner, name)
    generation = await roadmap_request(ai_client, owner)
    assert (generation["status"], generation["attempts"]) == ("failed", 3)
    assert "No usable roadmap after 3 attempt(s)" in generation["error"]
    assert await milestones(ai_client, owner) == []

    # The owner asks again and sees the failure reported in the stream.
    fake_llm.script_roadmap(*(Reply.of_text("Maaf.", match=name) for _ in range(3)))
    status, events, _ = await generate(ai_client, owner)
    assert status == 200
    names = [n for n, _ in events]
    assert names[0] == "generation" and names[-1] == "error"
    assert events[-1][1]["code"] == "generation_failed"
    assert "progress" in names
    assert await milestones(ai_client, owner) == []


# --- asking for a roadmap -----------------------------------------------------------------


async def test_generate_streams_progress_and_the_saved_milestones(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    name = business_name()
    owner = await new_account(ai_client)
    await create_business(ai_client, owner, name)
    await roadmap_request(ai_client, owner)
    for m in await milestones(ai_client, owner):  # the owner clears the first roadmap
        r = await ai_client.delete(f"{API}/milestones/{m['id']}", headers=owner.headers)
        assert r.status_code == 204

    fake_llm.script_roadmap(with_stall(Reply.roadmap(4, match=name, title="Online"), 0.6))
    status, events, _ = await generate(ai_client, owner, {"focus": "jualan lewat GoFood"})
    assert status == 200
    names = [n for n, _ in events]
    assert names[0] == "generation"
    assert events[0][1]["created"] is True and events[0][1]["kind"] == "requested"
    assert names[-1] == "done"
    assert events[-1][1]["milestones_created"] == 4
    progress = [d for n, d in events if n == "progress"]
    assert progress[-1]["status"] == "succeeded"
    assert any(p["status"] == "running" and p["stage"] == "thinking" for p in progress)
    streamed = [d for n, d in events if n == "milestone"]
    assert [m["title"] for m in streamed] == [f"Online {n}" for n in range(1, 5)]
    assert [m["id"] for m in await milestones(ai_client, owner)] == [m["id"] for m in streamed]
    assert "jualan lewat GoFood" in requests_for(fake_llm, name)[-1]["messages"][1]["content"]


async def test_generate_is_refused_while_milestones_are_active(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    await create_business(ai_client, owner, business_name())
    await roadmap_request(ai_client, owner)
    status, _, body = await generate(ai_client, owner)
    assert status == 409
    assert "active milestone" in body["detail"]
    bad, _, _ = await generate(ai_client, owner, {"focus": "x" * 501})
    assert bad == 422


async def test_roadmap_requests_are_limited_per_day(
    database_url: str, tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    """ROADMAP_GENERATIONS_PER_DAY=2: the profile's request and one POST /generate use
    the quota; then completing the roadmap records no 'next' request, and the third
    request, a POST /generate, is a 429 that reaches no model."""
    name = business_name()
    settings = make_settings(
        database_url, tmp_path / "data", **llm_settings(fake_llm), ROADMAP_GENERATIONS_PER_DAY=2
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60), asgi_client(app) as client:
        owner = await new_account(client)
        await create_business(client, owner, name)  # request 1
        await roadmap_request(client, owner)
        await delete_all(client, owner, await milestones(client, owner))
        status, events, _ = await generate(client, owner)  # request 2
        assert status == 200 and events[0][1]["created"] is True
        assert events[-1][0] == "done", events
        second = events[0][1]["generation_id"]

        last, *others = await milestones(client, owner)
        await delete_all(client, owner, others)
        outcome = (await complete_all(client, owner, [last]))[-1]
        assert outcome["milestone_completed"] is True
        assert outcome["next_roadmap_requested"] is False  # the quota is used

        r = await client.post(f"{API}/milestones/generate", headers=owner.headers)
        assert r.status_code == 429, r.text
        assert r.headers["content-type"].startswith("application/json")
        # A slot frees 24 hours after the oldest request in the window.
        assert 23 * 3600 < int(r.headers["retry-after"]) <= 24 * 3600 + 1
        assert "2 roadmap requests in 24 hours" in r.json()["detail"]
        r = await client.get(f"{API}/milestones/generation", headers=owner.headers)
        assert r.json()["id"] == second  # nothing new was recorded
    assert len(requests_for(fake_llm, name)) == 2


@pytest.mark.postgres_only
async def test_joined_generate_streams_hold_no_pooled_connection(
    fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """Four streams follow the profile's request while the model stalls; with a pool of
    two connections, another request still gets one (a joined stream's request used to
    keep its transaction, and its connection, open for the whole stream)."""
    name = business_name()
    fake_llm.script_roadmap(with_stall(Reply.roadmap(4, match=name), 60))  # outlives the test
    async with fresh_database_url(tmp_path, "pool") as url:
        llm = {**llm_settings(fake_llm), "LLM_TIMEOUT_SECONDS": 120}
        app = create_app(
            make_settings(
                url, tmp_path / "data", **llm, DB_POOL_SIZE=2, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=5
            )
        )
        async with (
            served(app) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as client,
            AsyncExitStack() as streams,
        ):
            owner = await new_account(client)
            await create_business(client, owner, name)
            running = await roadmap_request(client, owner, until={"running"})
            opened: list[tuple[httpx.Response, AsyncIterator[str]]] = []
            for _ in range(4):
                r = await streams.enter_async_context(
                    client.stream("POST", f"{API}/milestones/generate", headers=owner.headers)
                )
                assert r.status_code == 200, await r.aread()
                lines = r.aiter_lines()  # kept: a dropped reader would close the stream
                opened.append((r, lines))
                async with asyncio.timeout(30):
                    joined = await next_event(lines)
                    following = await next_event(lines)
                assert joined[0] == "generation"
                assert (joined[1]["generation_id"], joined[1]["created"]) == (running["id"], False)
                assert following[0] == "progress" and following[1]["status"] == "running"

            # All four are open, following the request; the pool still serves others.
            r = await client.get(f"{API}/milestones", headers=owner.headers)
            assert r.status_code == 200, r.text
            assert r.json()["items"] == []
            assert not any(response.is_closed for response, _ in opened)
            r = await client.get(f"{API}/milestones/generation", headers=owner.headers)
            assert r.status_code == 200 and r.json()["status"] == "running", r.text


async def test_two_triggers_for_one_business_make_one_roadmap(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    """The profile's request is still running when the owner asks, twice at once: both
    streams follow the same request, and one roadmap is saved."""
    name = business_name()
    fake_llm.script_roadmap(with_stall(Reply.roadmap(4, match=name), 1.0))
    owner = await new_account(ai_client)
    await create_business(ai_client, owner, name)
    results = await asyncio.gather(generate(ai_client, owner), generate(ai_client, owner))
    firsts = [events[0][1] for status, events, _ in results if status == 200]
    assert len(firsts) == 2
    assert {f["created"] for f in firsts} == {False}
    assert {f["kind"] for f in firsts} == {"initial"}
    assert len({f["generation_id"] for f in firsts}) == 1
    assert all(events[-1][0] == "done" for _, events, _ in results)
    assert len(await milestones(ai_client, owner)) == 4
    assert len(requests_for(fake_llm, name)) == 1


async def test_a_roadmap_due_while_the_owner_planned_by_hand_is_skipped(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    name = business_name()
    fake_llm.script_roadmap(with_stall(Reply.roadmap(4, match=name), 1.0))
    owner = await new_account(ai_client)
    await create_business(ai_client, owner, name)
    r = await ai_client.post(
        f"{API}/milestones",
        headers=owner.headers,
        json={"title": "Rencana saya sendiri", "tasks": ["Langkah pertama"]},
    )
    assert r.status_code == 201
    generation = await roadmap_request(ai_client, owner)
    assert generation["status"] == "skipped"
    assert [m["title"] for m in await milestones(ai_client, owner)] == ["Rencana saya sendiri"]


# --- restarts -----------------------------------------------------------------------------


def _server_env(database_url: str, workdir: Path, fake: FakeLLMServer) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=database_url,
        DATA_DIR=str(workdir / "data"),
        BCRYPT_ROUNDS="4",
        LLM_BASE_URL=fake.base_url,
        LLM_MODEL_NAME="fake-model",
        LLM_MAX_RETRIES="0",
        ROADMAP_ATTEMPT_TIMEOUT_SECONDS="2",
    )


@pytest.mark.slow
@pytest.mark.parametrize("how", ["crash", "graceful"])
async def test_a_restart_mid_generation_still_ends_with_exactly_one_roadmap(
    fake_llm: FakeLLMServer, tmp_path: Path, how: str
) -> None:
    """The first server is killed (SIGKILL: its lease must run out) or stopped (SIGTERM:
    it hands the request back) while the model is thinking; the next server resumes it."""
    name = business_name()
    fake_llm.script_roadmap(with_stall(Reply.roadmap(4, match=name, title="Lama"), 30))
    async with fresh_database_url(tmp_path, "restart") as url:
        env = _server_env(url, tmp_path, fake_llm)
        first = ServerProcess(env, tmp_path)
        with first:
            async with httpx.AsyncClient(base_url=first.base_url, timeout=30) as c:
                owner = await new_account(c)
                await create_business(c, owner, name)
                await roadmap_request(c, owner, until={"running"})
                if how == "crash":
                    first.proc.send_signal(signal.SIGKILL)
                first.stop()

        fake_llm.script_roadmap(Reply.roadmap(4, match=name, title="Baru"))
        with ServerProcess(env, tmp_path) as second:
            async with httpx.AsyncClient(base_url=second.base_url, timeout=30) as c:
                r = await c.post(
                    f"{API}/auth/login", json={"email": owner.email, "password": owner.password}
                )
                owner.access_token = r.json()["access_token"]
                generation = await roadmap_request(c, owner)
                assert generation["status"] == "succeeded"
                # The interrupted attempt counts (the first server may have begun a
                # second one, after the first timed out, before it stopped).
                assert generation["attempts"] >= 2
                items = await milestones(c, owner)
                assert [m["title"] for m in items] == [f"Baru {n}" for n in range(1, 5)]
            if how == "graceful":
                assert "roadmap_requests_released" in first.logs()
