"""AI roadmap generation, end to end: the app, its worker, the fake LLM server, a database.

Roadmap requests go to the fake's roadmap channel (requests offering `save_roadmap`).
Each test names its business uniquely and scripts replies with `match=` that name, so
a generation another test left running can never take them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, Account, new_account
from tests.helpers.databases import fresh_database_url
from tests.helpers.server import ServerProcess, clean_env
from tests.helpers.sse import parse_sse

TERMINAL = {"succeeded", "failed", "skipped"}


def business_name() -> str:
    return f"Warung Uji {uuid.uuid4().hex[:8]}"


async def create_business(client: httpx.AsyncClient, owner: Account, name: str) -> None:
    r = await client.post(
        f"{API}/business",
        headers=owner.headers,
        json={"name": name, "category": "Kuliner", "primary_goal": "buka cabang kedua"},
    )
    assert r.status_code == 201, r.text


async def wait_generation(
    client: httpx.AsyncClient, owner: Account, *, status: set[str] = TERMINAL, tries: int = 300
) -> dict[str, Any]:
    """Poll the latest roadmap request until its status is in `status` (about 30 s)."""
    body: dict[str, Any] = {}
    for _ in range(tries):
        r = await client.get(f"{API}/milestones/generation", headers=owner.headers)
        if r.status_code == 200:
            body = r.json()
            if body["status"] in status:
                return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"roadmap request did not reach {status}: {body}")


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
) -> dict[str, Any]:
    """Tick every task of `items`; returns the last outcome."""
    outcome: dict[str, Any] = {}
    for milestone in items:
        for task in milestone["tasks"]:
            r = await client.post(
                f"{API}/milestones/{milestone['id']}/tasks/{task['id']}/complete",
                headers=owner.headers,
            )
            assert r.status_code == 200, r.text
            outcome = r.json()
    return outcome


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


# --- the first roadmap, and the next ------------------------------------------------------


async def test_profile_creation_leads_to_four_saved_milestones(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    name = business_name()
    fake_llm.script_roadmap(Reply.roadmap(4, match=name, title="Mulai"))
    owner = await new_account(ai_client)
    await create_business(ai_client, owner, name)

    generation = await wait_generation(ai_client, owner)
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
    await wait_generation(ai_client, owner)
    first = await milestones(ai_client, owner)

    outcome = await complete_all(ai_client, owner, first[:3])
    assert outcome["milestone_completed"] is True
    assert outcome["next_roadmap_requested"] is False  # one milestone is still active
    outcome = await complete_all(ai_client, owner, first[3:])
    assert outcome["milestone_completed"] is True
    assert outcome["next_roadmap_requested"] is True

    generation = await wait_generation(ai_client, owner)
    assert (generation["kind"], generation["status"]) == ("next", "succeeded")
    pending = await milestones(ai_client, owner, status="pending")
    assert [m["title"] for m in pending] == ["Lanjut 1", "Lanjut 2", "Lanjut 3"]
    assert len(await milestones(ai_client, owner)) == 7
    # The next roadmap follows from what was done.
    context = requests_for(fake_llm, name)[-1]["messages"][1]["content"]
    assert all(m["title"] in context for m in first)
    # Completing was paid exactly once: tasks 5 x difficulty, bonuses 20 x difficulty.
    me = (await ai_client.get(f"{API}/gamification/me", headers=owner.headers)).json()
    expected = sum(
        20 * m["difficulty"] + sum(t["reward_points"] for t in m["tasks"]) for m in first
    )
    assert me["total_points"] == expected


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
    running = await wait_generation(ai_client, owner, status={"running"} | TERMINAL)
    if running["status"] == "running":
        assert await milestones(ai_client, owner) == []  # nothing half-saved
    generation = await wait_generation(ai_client, owner)
    assert (generation["status"], generation["attempts"]) == ("succeeded", 3)
    assert [m["title"] for m in await milestones(ai_client, owner)] == [
        f"Benar {n}" for n in range(1, 5)
    ]
    # The rejected half roadmap was explained to the model before it tried again.
    last = requests_for(fake_llm, name)[-1]["messages"]
    assert last[-1]["role"] == "tool"
    assert "at least 4" in last[-1]["content"]


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
    generation = await wait_generation(ai_client, owner)
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
    await wait_generation(ai_client, owner)
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
    await wait_generation(ai_client, owner)
    status, _, body = await generate(ai_client, owner)
    assert status == 409
    assert "active milestone" in body["detail"]
    bad, _, _ = await generate(ai_client, owner, {"focus": "x" * 501})
    assert bad == 422


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
    generation = await wait_generation(ai_client, owner)
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
                await wait_generation(c, owner, status={"running"})
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
                generation = await wait_generation(c, owner, tries=400)
                assert generation["status"] == "succeeded"
                assert generation["attempts"] == 2  # the interrupted attempt counts
                items = await milestones(c, owner)
                assert [m["title"] for m in items] == [f"Baru {n}" for n in range(1, 5)]
            if how == "graceful":
                assert "roadmap_requests_released" in first.logs()
