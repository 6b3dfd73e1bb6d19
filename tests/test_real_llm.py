"""Reka and the roadmap against a real model: llama.cpp's server with Gemma 3 270M.

Skipped unless `scripts/test-real-llm.sh` (or `.ci/run`) installed the server and the
model. The service is the real `telaten serve`, configured through its ordinary settings
(`LLM_BASE_URL`, `LLM_MODEL_NAME`, `LLM_API_KEY`); between it and llama.cpp sits a
recording proxy (`tests/helpers/llm_proxy.py`) that shows what was asked and answered.

A 270M model is no advisor: what these tests hold it to is the protocol (text streams and
is saved, a tool call runs on the caller's business and its result reaches the model, a
roadmap is validated and saved or cleanly refused, a dying server ends the turn with its
code). What it actually said is printed (`pytest -s`) and quoted in the closing note.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.accounts import API, Account, new_account
from tests.helpers.business import category_id, owner_with_business, record, roadmap_request
from tests.helpers.llama_server import MODEL_ALIAS, LlamaServer, configured
from tests.helpers.llm_proxy import RecordingProxy
from tests.helpers.server import ServerProcess, served_env
from tests.helpers.sse import ChatStream, chat, parse_sse

pytestmark = pytest.mark.real_llm

# A real model on 2 cores: a prompt with every tool schema takes ~20 s to read.
LLM_SECONDS = 300


def served(database_url: str, workdir: Path, llm_url: str) -> dict[str, str]:
    """`telaten serve` on llama.cpp, configured as any provider would be."""
    return served_env(
        database_url,
        workdir,
        llm_url,
        LLM_MODEL_NAME=MODEL_ALIAS,
        LLM_API_KEY="sk-local-llama",  # llama.cpp needs none; sent as any provider's key
        LLM_TEMPERATURE="0",
        LLM_MAX_TOKENS="2500",
        LLM_TIMEOUT_SECONDS=str(LLM_SECONDS),
        CHAT_TURN_TIMEOUT_SECONDS="900",
        ROADMAP_ATTEMPT_TIMEOUT_SECONDS="600",
        LOG_LEVEL="INFO",
    )


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    found = configured()
    assert found, "the real_llm tests need TELATEN_REAL_LLM_PYTHON and TELATEN_REAL_LLM_MODEL"
    with LlamaServer(*found, tmp_path_factory.mktemp("llama")) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(llama: LlamaServer) -> Iterator[RecordingProxy]:
    recorder = RecordingProxy(llama.base_url)
    recorder.start()
    yield recorder
    recorder.stop()


@pytest.fixture(scope="module")
def service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, proxy: RecordingProxy
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("serve")
    with ServerProcess(served(database_url, workdir, proxy.base_url), workdir) as server:
        yield server


def client_of(server: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=LLM_SECONDS * 3)


def quote(label: str, text: str) -> None:
    print(f"\n[{label}] {text!r}")


async def messages(client: httpx.AsyncClient, owner: Account, s: ChatStream) -> list[dict]:
    session_id = s.first("session")["session_id"]
    r = await client.get(f"{API}/chat/sessions/{session_id}/messages", headers=owner.headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_plain_turn_streams_saves_and_sends_history(
    service: ServerProcess, proxy: RecordingProxy
) -> None:
    async with client_of(service) as client:
        owner = await new_account(client)
        before = len(proxy.exchanges)
        first = await chat(client, owner.headers, "Halo! Apa kabar?")
        assert first.status == 200
        assert first.names[-1] == "done", first.events
        assert first.all("delta") and first.text.strip()
        quote("plain turn", first.text)
        saved = await messages(client, owner, first)
        assert [(m["role"], m["status"]) for m in saved] == [
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        assert saved[1]["content"] == first.text == first.first("message")["content"]
        # Token usage is saved where the server streams it (llama-cpp-python's server
        # 0.3.36 does not, even when asked; llama.cpp's llama-server and Ollama do).
        sent = proxy.exchanges[-1].usage()
        saved_usage = (saved[1]["prompt_tokens"], saved[1]["completion_tokens"])
        if sent is None:
            assert saved_usage == (None, None)
        else:
            assert saved_usage[0] >= sent["prompt_tokens"] > 0

        second = await chat(
            client, owner.headers, "Terima kasih.", first.first("session")["session_id"]
        )
        assert second.names[-1] in ("done", "error"), second.events
        quote("second turn", second.text or json.dumps(second.all("error")))
        asked = proxy.exchanges[-1].request["messages"]
        assert {"role": "user", "content": "Halo! Apa kabar?"} in asked
        assert {"role": "assistant", "content": first.text} in asked
        assert asked[-1] == {"role": "user", "content": "Terima kasih."}
        assert len(proxy.exchanges) > before


async def test_a_domain_tool_runs_on_the_callers_business(
    service: ServerProcess, proxy: RecordingProxy
) -> None:
    async with client_of(service) as client:
        name = f"Kopi Real {uuid.uuid4().hex[:6]}"
        owner = await owner_with_business(client, name)
        sale = await category_id(client, owner, "income", "Penjualan")
        r = await record(client, owner, type="income", amount=987654, category_id=sale)
        assert r.status_code == 201, r.text

        proxy.force_next("business_summary")
        turn = len(proxy.exchanges)
        s = await chat(client, owner.headers, "Bagaimana ringkasan usaha saya?")
        assert s.status == 200
        call = s.first("tool_call")
        quote("tool call", json.dumps(call))
        assert call["name"] == "business_summary"
        result = s.first("tool_result")
        quote("tool result", result["output"])
        assert result["id"] == call["id"] and not result["is_error"]
        summary = json.loads(result["output"])
        assert summary["name"] == name  # the caller's business, with the sale's points
        assert summary["points"] > 0 and "Catatan Pertama" in summary["achievements"]
        later = [e.request for e in proxy.exchanges[turn + 1 :]]
        assert any(
            m.get("role") == "tool" and m.get("tool_call_id") == call["id"]
            and m.get("content") == result["output"]
            for request in later
            for m in request["messages"]
        ), "the tool's result never reached the model"  # fmt: skip
        assert s.names[-1] in ("done", "error"), s.events
        quote("answer after the tool", s.text or json.dumps(s.all("error")))


async def test_roadmap_on_profile_creation(service: ServerProcess, proxy: RecordingProxy) -> None:
    async with client_of(service) as client:
        owner = await owner_with_business(
            client, "Bakso Pak Real", primary_goal="menambah pelanggan tetap"
        )
        status = await roadmap_request(
            client, owner, until={"succeeded", "failed"}, bound=4 * LLM_SECONDS, pause=1
        )
        roadmap_calls = [
            e
            for e in proxy.exchanges
            if "save_roadmap" in json.dumps(e.request) and "Bakso Pak Real" in json.dumps(e.request)
        ]
        for n, exchange in enumerate(roadmap_calls, 1):
            quote(f"roadmap attempt {n} arguments", exchange.arguments()[:3000])
        r = await client.get(f"{API}/milestones", headers=owner.headers)
        items = r.json()["items"]
        quote("roadmap outcome", json.dumps(status))
        assert status.get("status") in ("succeeded", "failed"), status
        if status["status"] == "succeeded":
            assert len(items) == 4
            assert all(3 <= len(m.get("tasks", [])) <= 5 for m in items if "tasks" in m)
            quote("saved milestones", json.dumps([m["title"] for m in items]))
        else:
            assert items == [] and status.get("error")
        assert roadmap_calls and all(
            e.request.get("tool_choice") != "required" for e in roadmap_calls[1:]
        )


async def test_server_killed_mid_stream(database_url: str, tmp_path: Path) -> None:
    """A llama.cpp server of its own, killed (SIGKILL) once the first text arrives: the
    turn ends with its error code and what streamed is saved as partial."""
    python, model = configured() or ("", "")
    with LlamaServer(python, model, tmp_path) as own:
        proxy = RecordingProxy(own.base_url)
        proxy.start()
        try:
            env = served(database_url, tmp_path, proxy.base_url)
            with ServerProcess(env, tmp_path) as server:
                async with client_of(server) as client:
                    owner = await new_account(client)
                    body = {"content": "Tulis cerita yang sangat panjang tentang warung kopi."}
                    raw = ""
                    async with client.stream(
                        "POST", f"{API}/chat/stream", json=body, headers=owner.headers
                    ) as r:
                        assert r.status_code == 200
                        async for piece in r.aiter_text():
                            raw += piece
                            if "event: delta" in raw and own.proc.poll() is None:
                                own.kill()
                    events = parse_sse(raw)
                    s = ChatStream(200, events)
                    quote("killed mid-stream", s.text)
                    assert s.names[-1] == "error", s.events
                    assert s.first("error")["code"] in ("llm_unreachable", "llm_bad_response")
                    saved = await messages(client, owner, s)
                    assert saved[1]["status"] == "partial"
                    assert saved[1]["content"] == s.text and s.text
        finally:
            proxy.stop()
