"""Chat over the API against the fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from llama_index.core.tools import FunctionTool

from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, Account, new_account
from tests.helpers.server import ServerProcess, clean_env
from tests.helpers.sse import chat


async def history(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> list[dict[str, Any]]:
    r = await client.get(f"{API}/chat/sessions/{session_id}/messages", headers=account.headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


# --- happy paths ------------------------------------------------------------------------


async def test_plain_reply_streams_and_is_saved(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(Reply.of_text("Halo Bu Sari! Omzet minggu ini naik 10%.", chunk_size=6))
    s = await chat(ai_client, owner.headers, "Halo Reka, bagaimana omzet saya?")
    assert s.status == 200
    assert s.names[0] == "session" and s.names[-2:] == ["message", "done"]
    assert set(s.names[1:-2]) == {"delta"} and len(s.all("delta")) >= 5
    session = s.first("session")
    assert session["created"] is True and session["title"] == "Halo Reka, bagaimana omzet saya?"
    assert s.text == "Halo Bu Sari! Omzet minggu ini naik 10%."
    assert s.first("message")["content"] == s.text
    assert s.first("done") == {}

    items = await history(ai_client, owner, session["session_id"])
    assert [(m["role"], m["status"]) for m in items] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert items[0]["content"] == "Halo Reka, bagaimana omzet saya?"
    assert items[1]["content"] == s.text and items[1]["id"] == s.first("message")["message_id"]

    sent = fake_llm.requests[0]
    assert sent["stream"] is True and sent["model"] == "fake-model"
    system = sent["messages"][0]
    assert (
        system["role"] == "system"
        and "Reka" in system["content"]
        and "Bu Sari" in system["content"]
    )
    assert "Asia/Jakarta" in system["content"]
    assert sent["messages"][-1] == {"role": "user", "content": "Halo Reka, bagaimana omzet saya?"}
    tool_names = [t["function"]["name"] for t in sent["tools"]]
    assert "get_my_account" in tool_names


async def test_second_turn_sends_the_history(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(Reply.of_text("Jawaban pertama."), Reply.of_text("Jawaban kedua."))
    first = await chat(ai_client, owner.headers, "Pertanyaan pertama")
    session_id = first.first("session")["session_id"]
    second = await chat(ai_client, owner.headers, "Pertanyaan kedua", session_id)
    assert second.first("session") == {
        "session_id": session_id,
        "title": "Pertanyaan pertama",
        "created": False,
    }
    roles = [(m["role"], m.get("content")) for m in fake_llm.requests[1]["messages"][1:]]
    assert roles == [
        ("user", "Pertanyaan pertama"),
        ("assistant", "Jawaban pertama."),
        ("user", "Pertanyaan kedua"),
    ]
    r = await ai_client.get(f"{API}/chat/sessions", headers=owner.headers)
    assert r.json()["total"] == 1


async def test_tool_call_shows_call_and_real_result(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(
        Reply.tool_call("get_my_account", {}),
        Reply.of_text("Akun Anda terdaftar atas nama Bu Sari."),
    )
    s = await chat(ai_client, owner.headers, "Siapa nama di akun saya?")
    assert s.names[:3] == ["session", "tool_call", "tool_result"], s.names
    assert s.names[-2:] == ["message", "done"]
    call, result = s.first("tool_call"), s.first("tool_result")
    assert call["name"] == "get_my_account" and call["arguments"] == {}
    assert result["id"] == call["id"] and result["is_error"] is False
    assert owner.email in result["output"]  # the real tool read the real account

    # The model got the tool's output back, tied to its call.
    followup = fake_llm.requests[1]["messages"]
    tool_msg = next(m for m in followup if m["role"] == "tool")
    assert tool_msg["tool_call_id"] == call["id"] and owner.email in tool_msg["content"]

    items = await history(ai_client, owner, s.first("session")["session_id"])
    assert [m["role"] for m in items] == ["user", "tool", "assistant"]
    assert items[1]["tool_calls"]["name"] == "get_my_account" and owner.email in items[1]["content"]
    assert items[2]["tool_calls"] == [{"id": call["id"], "name": "get_my_account", "arguments": {}}]


async def test_several_tool_calls_in_one_reply(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(
        Reply.tool_calls_of(("get_my_account", {}), ("no_such_tool", {"x": 1})),
        Reply.of_text("Selesai."),
    )
    s = await chat(ai_client, owner.headers, "Cek dua hal")
    results = s.all("tool_result")
    assert [r["is_error"] for r in results] == [False, True]
    assert "no tool named 'no_such_tool'" in results[1]["output"]
    assert s.names[-1] == "done"


@pytest.fixture
def failing_tools(ai_app: FastAPI) -> Any:
    """External tools (the MCP slot of the tool list) that fail in different ways."""

    async def explode(reason: str) -> str:
        """Always raises."""
        raise RuntimeError(f"exploded because {reason}")

    class Provider:
        def tools(self, reserved: Any = ()) -> list[FunctionTool]:
            return [FunctionTool.from_defaults(async_fn=explode, name="explode")]

    real = ai_app.state.context
    ai_app.state.context = dataclasses.replace(real, mcp=Provider())
    yield
    ai_app.state.context = real


@pytest.mark.usefixtures("failing_tools")
async def test_a_tool_that_raises_is_an_error_result_and_the_agent_goes_on(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(
        Reply.tool_call("explode", {"reason": "testing"}),
        Reply.tool_call("explode", {"wrong_arg": 1}),
        Reply.of_text("Maaf, alatnya gagal."),
    )
    s = await chat(ai_client, owner.headers, "Coba alatnya")
    first, second = s.all("tool_result")
    assert first["is_error"] is True and "exploded because testing" in first["output"]
    assert second["is_error"] is True and "invalid arguments" in second["output"]
    assert s.text == "Maaf, alatnya gagal." and s.names[-1] == "done"
    items = await history(ai_client, owner, s.first("session")["session_id"])
    assert [m["role"] for m in items] == ["user", "tool", "tool", "assistant"]
    assert items[1]["tool_calls"]["is_error"] is True


# --- failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply.error(429), "llm_rate_limited"),
        (Reply.error(500), "llm_unavailable"),
        (Reply.error(503), "llm_unavailable"),
        (Reply.error(401), "llm_auth_failed"),
        (Reply.stall(60), "llm_timeout"),  # the app gives up after 1.5 s
        (Reply.tool_call("get_my_account", '{"broken": '), "llm_bad_tool_call"),
    ],
)
async def test_llm_failures_end_with_an_error_event(
    quick_timeout_client: httpx.AsyncClient, fake_llm: FakeLLMServer, reply: Reply, code: str
) -> None:
    ai_client = quick_timeout_client
    owner = await new_account(ai_client)
    fake_llm.script(reply)
    s = await chat(ai_client, owner.headers, "Halo")
    assert s.names == ["session", "error"], s.events
    error = s.first("error")
    assert error["code"] == code and error["message"]
    assert "sk-fake-key" not in str(s.events)
    items = await history(ai_client, owner, s.first("session")["session_id"])
    assert [(m["role"], m["status"], m["error_code"]) for m in items] == [
        ("user", "complete", None),
        ("assistant", "error", code),
    ]
    # The session is free again: the next turn works.
    fake_llm.script(Reply.of_text("Sudah pulih."))
    again = await chat(ai_client, owner.headers, "Lagi", s.first("session")["session_id"])
    assert again.names[-1] == "done" and again.text == "Sudah pulih."


async def test_stall_mid_stream_saves_the_partial_reply(
    quick_timeout_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    ai_client = quick_timeout_client
    owner = await new_account(ai_client)
    fake_llm.script(
        Reply.of_text(
            "Langkah pertama: catat semua pengeluaran.", chunk_size=5, stall_after_chunks=4
        )
    )
    s = await chat(ai_client, owner.headers, "Apa langkah pertama?")
    assert s.names[0] == "session" and s.names[-1] == "error"
    assert s.first("error")["code"] == "llm_timeout"
    assert s.text == "Langkah pertama"  # the role chunk, then 3 text chunks of 5
    items = await history(ai_client, owner, s.first("session")["session_id"])
    assert items[-1]["status"] == "partial" and items[-1]["content"] == s.text


async def test_connection_dropped_mid_stream(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(
        Reply.of_text("Sebagian jawaban yang terputus di tengah.", chunk_size=5, die_after_chunks=3)
    )
    s = await chat(ai_client, owner.headers, "Halo")
    assert s.names[-1] == "error" and s.first("error")["code"] in ("llm_unreachable", "llm_error")
    items = await history(ai_client, owner, s.first("session")["session_id"])
    assert items[-1]["status"] == "partial" and items[-1]["content"] == s.text != ""


@pytest.mark.slow
async def test_slow_token_stream_is_not_a_timeout(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    """Each pause is below the timeout, the whole reply takes longer than it."""
    owner = await new_account(ai_client)
    fake_llm.script(Reply.of_text("pelan-pelan asal selamat", chunk_size=4, chunk_delay=0.4))
    s = await chat(ai_client, owner.headers, "Halo")
    assert s.names[-1] == "done" and s.text == "pelan-pelan asal selamat"


async def test_second_stream_into_a_busy_session_is_409(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(Reply.of_text("satu"))
    session_id = (await chat(ai_client, owner.headers, "Mulai")).first("session")["session_id"]
    fake_llm.script(Reply.of_text("jawaban lambat", chunk_size=2, chunk_delay=0.2))
    slow = asyncio.create_task(chat(ai_client, owner.headers, "Pertanyaan lambat", session_id))
    await asyncio.sleep(0.4)
    busy = await chat(ai_client, owner.headers, "Menyela", session_id)
    assert busy.status == 409 and "already answering" in busy.body["detail"]
    r = await ai_client.delete(f"{API}/chat/sessions/{session_id}", headers=owner.headers)
    assert r.status_code == 409
    assert (await slow).names[-1] == "done"
    items = await history(ai_client, owner, session_id)
    assert [m["content"] for m in items if m["role"] == "user"] == ["Mulai", "Pertanyaan lambat"]


# --- ownership and input ----------------------------------------------------------------


async def test_other_users_sessions_are_404(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    alice, bob = await new_account(ai_client), await new_account(ai_client)
    fake_llm.script(Reply.of_text("rahasia Alice"))
    session_id = (await chat(ai_client, alice.headers, "data saya")).first("session")["session_id"]
    calls_before = len(fake_llm.requests)
    s = await chat(ai_client, bob.headers, "ikut nimbrung", session_id)
    assert s.status == 404
    assert len(fake_llm.requests) == calls_before  # nothing reached the model
    for method, path, body in (
        ("GET", f"/chat/sessions/{session_id}", None),
        ("PATCH", f"/chat/sessions/{session_id}", {"title": "punya Bob"}),
        ("DELETE", f"/chat/sessions/{session_id}", None),
        ("GET", f"/chat/sessions/{session_id}/messages", None),
    ):
        r = await ai_client.request(method, API + path, headers=bob.headers, json=body)
        assert r.status_code == 404, (method, path)
    assert len(await history(ai_client, alice, session_id)) == 2
    assert (await chat(ai_client, bob.headers, "x", str(uuid.uuid4()))).status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"content": ""},
        {"content": "   "},
        {"content": "a\x00b"},
        {"content": "x" * 8001},
        {"content": "hi", "session_id": "not-a-uuid"},
        {"content": "hi", "session_id": 12345678901234567890123},
        {"content": "hi", "extra": 1},
        {},
    ],
)
async def test_bad_chat_requests_are_422(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer, body: dict[str, Any]
) -> None:
    owner = await new_account(ai_client)
    r = await ai_client.post(f"{API}/chat/stream", json=body, headers=owner.headers)
    assert r.status_code == 422
    assert fake_llm.requests == []


async def test_stream_needs_a_token(ai_client: httpx.AsyncClient) -> None:
    r = await ai_client.post(f"{API}/chat/stream", json={"content": "hi"})
    assert r.status_code == 401


async def test_sessions_list_rename_delete(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    ids = []
    for i in range(3):
        fake_llm.script(Reply.of_text(f"jawaban {i}"))
        ids.append(
            (await chat(ai_client, owner.headers, f"sesi {i}")).first("session")["session_id"]
        )
    r = await ai_client.get(f"{API}/chat/sessions", headers=owner.headers, params={"limit": 2})
    page = r.json()
    assert page["total"] == 3 and [s["id"] for s in page["items"]] == [ids[2], ids[1]]
    r = await ai_client.get(
        f"{API}/chat/sessions", headers=owner.headers, params={"limit": 2, "offset": 2}
    )
    assert [s["id"] for s in r.json()["items"]] == [ids[0]]
    for params in ({"limit": 0}, {"limit": -5}, {"offset": -1}, {"offset": 2**64}):
        assert (
            await ai_client.get(f"{API}/chat/sessions", headers=owner.headers, params=params)
        ).status_code == 422

    r = await ai_client.patch(
        f"{API}/chat/sessions/{ids[0]}", headers=owner.headers, json={"title": "  Stok  "}
    )
    assert r.status_code == 200 and r.json()["title"] == "Stok"
    for bad in ({"title": ""}, {"title": "a\x00"}, {"title": "x" * 500}):
        assert (
            await ai_client.patch(f"{API}/chat/sessions/{ids[0]}", headers=owner.headers, json=bad)
        ).status_code == 422

    assert (
        await ai_client.delete(f"{API}/chat/sessions/{ids[0]}", headers=owner.headers)
    ).status_code == 204
    assert (
        await ai_client.get(f"{API}/chat/sessions/{ids[0]}", headers=owner.headers)
    ).status_code == 404
    r = await ai_client.get(f"{API}/chat/sessions/{ids[0]}/messages", headers=owner.headers)
    assert r.status_code == 404
    assert (
        await ai_client.get(f"{API}/chat/sessions/not-a-uuid", headers=owner.headers)
    ).status_code == 422


async def test_without_llm_chat_is_503_and_the_rest_works(client: httpx.AsyncClient) -> None:
    owner = await new_account(client)
    r = await client.post(f"{API}/chat/stream", json={"content": "halo"}, headers=owner.headers)
    assert r.status_code == 503
    assert "LLM_MODEL_NAME" in r.json()["detail"] and "LLM_BASE_URL" in r.json()["detail"]
    assert (await client.get(f"{API}/chat/sessions", headers=owner.headers)).json()["total"] == 0
    assert (await client.get(f"{API}/auth/me", headers=owner.headers)).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200


@pytest.mark.slow
async def test_client_disconnect_saves_partial_and_stops_the_llm_call(
    fake_llm: FakeLLMServer, database_url: str, workdir: Path
) -> None:
    """A real server: the client reads one delta and hangs up."""
    text = "Ini jawaban panjang yang akan terputus karena pengguna menutup aplikasinya. " * 30
    env = clean_env(
        DATABASE_URL=database_url,
        DATA_DIR=str(workdir / "data"),
        BCRYPT_ROUNDS="4",
        LLM_BASE_URL=fake_llm.base_url,
        LLM_MODEL_NAME="fake-model",
        LLM_MAX_RETRIES="0",
    )
    with ServerProcess(env, workdir) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as c:
            owner = await new_account(c)
            fake_llm.script(Reply.of_text(text, chunk_size=3, chunk_delay=0.05))  # ~38 s in all
            seen = []
            async with c.stream(
                "POST", f"{API}/chat/stream", json={"content": "Halo"}, headers=owner.headers
            ) as r:
                async for line in r.aiter_lines():
                    seen.append(line)
                    if line.startswith("event: delta"):
                        break
            session_id = json.loads(seen[1].removeprefix("data: "))["session_id"]
            for _ in range(100):
                items = await history(c, owner, session_id)
                if len(items) == 2:
                    break
                await asyncio.sleep(0.1)
            assert [(m["role"], m["status"]) for m in items] == [
                ("user", "complete"),
                ("assistant", "partial"),
            ]
            assert items[1]["error_code"] == "client_disconnected"
            assert text.startswith(items[1]["content"]) and len(items[1]["content"]) < len(text)
            # The model call was abandoned, not left streaming into the void (a bound far
            # below the reply's own length, not a measure of speed).
            call = fake_llm.calls[-1]
            assert 0 < call.finished - call.started < 25
            # ... and the session is free for the next turn.
            fake_llm.script(Reply.of_text("Lanjut."))
            s = await chat(c, owner.headers, "Lanjut", session_id)
            assert s.names[-1] == "done"


async def test_business_profile_and_memory_reach_the_system_prompt(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    r = await ai_client.post(
        f"{API}/business",
        headers=owner.headers,
        json={
            "name": "Keripik Maju",
            "category": "Makanan ringan",
            "primary_goal": "masuk minimarket",
        },
    )
    assert r.status_code == 201
    await ai_client.patch(
        f"{API}/business/me", headers=owner.headers, json={"ai_context": {"fokus": "kemasan"}}
    )
    fake_llm.script(Reply.of_text("Siap."))
    await chat(ai_client, owner.headers, "Halo")
    system = fake_llm.requests[0]["messages"][0]["content"]
    assert "Keripik Maju" in system and "masuk minimarket" in system and "kemasan" in system


# --- found in review: output the database cannot store, malformed streams ---------------


async def test_unstorable_model_output_is_saved_cleaned_and_frees_the_session(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(
        Reply.tool_call("get_my_account", '{"note": "a\\u0000b"}'),
        Reply.of_text("abc\u0000def \ud800 ok"),
    )
    s = await chat(ai_client, owner.headers, "Halo")
    assert s.names[-2:] == ["message", "done"], s.events
    session_id = s.first("session")["session_id"]
    items = await history(ai_client, owner, session_id)
    assert [m["role"] for m in items] == ["user", "tool", "assistant"]
    assert items[-1]["content"] == "abcdef \ufffd ok" and items[-1]["status"] == "complete"
    assert s.first("message")["message_id"] == items[-1]["id"]
    fake_llm.script(Reply.of_text("lanjut"))
    assert (await chat(ai_client, owner.headers, "lagi", session_id)).names[-1] == "done"


@pytest.mark.parametrize(
    "raw",
    [
        b"data: {not json}\n\n",
        b'data: {"id": "x", "object": "chat.completion.chunk", "choices": null}\n\n',
        b'data: {"id": "x", "object": "chat.completion.chunk", '
        b'"choices": [{"index": 0, "delta": null}]}\n\n',
    ],
)
async def test_malformed_llm_streams_are_the_models_fault(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer, raw: bytes
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(Reply(raw_stream=raw))
    s = await chat(ai_client, owner.headers, "Halo")
    assert s.names[-1] == "error"
    assert s.first("error")["code"] in ("llm_bad_response", "llm_empty_response", "llm_error"), (
        s.events
    )
    assert s.first("error")["code"] != "internal_error"
    fake_llm.script(Reply.of_text("pulih"))
    again = await chat(ai_client, owner.headers, "lagi", s.first("session")["session_id"])
    assert again.names[-1] == "done"


async def test_history_sent_to_the_model_is_bounded_in_characters(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer, ai_app: FastAPI
) -> None:
    """Long messages must not grow the request past the model's context: oldest go first."""
    owner = await new_account(ai_client)
    long = "x" * 7000
    fake_llm.script(*(Reply.of_text(f"jawaban {i}") for i in range(5)))
    session_id = None
    for i in range(5):
        s = await chat(ai_client, owner.headers, f"{i} {long}", session_id)
        session_id = s.first("session")["session_id"]
    sent = fake_llm.requests[-1]["messages"]
    budget = ai_app.state.context.settings.CHAT_HISTORY_MAX_CHARS
    history = sent[1:-1]
    assert sum(len(m["content"]) for m in history) <= budget
    assert history and history[-1]["content"] == "jawaban 3"  # the newest are kept
    assert sent[-1]["content"].startswith("4 ")
