"""The providers' documented stream differences, each played by the fake LLM server.

Each test scripts the exact chunks one provider documents (or was seen to send) and runs
a whole chat turn through the API, then checks what the owner saw, what was saved, and
what was sent back to the model. References, per difference:

- OpenAI: tool calls stream by `index`, the id and name in the first delta only; usage in
  a last chunk with empty `choices` when `stream_options.include_usage` is set.
- Groq: a whole tool call in one delta; usage in `x_groq.usage`.
- llama.cpp (llama-cpp-python's server): id and name repeated in every delta, beside the
  legacy `function_call` field; `finish_reason` "stop" after a tool call; refuses any
  `tool_choice` but "auto" when streaming, by raising inside a 200 stream (nothing sent).
- Ollama: tool calls whole, `finish_reason` "stop"; older versions, arguments as an object.
- Gemini's OpenAI-compatible endpoint and some proxies: tool-call deltas without `index`.
- DeepSeek (deepseek-reasoner): `reasoning_content` deltas before the answer; it must not
  be sent back as input. vLLM and OpenRouter call it `reasoning`.
- OpenRouter: `: OPENROUTER PROCESSING` comments as keep-alives; an error object inside a
  200 stream when the upstream fails mid-answer.
- vLLM without a tool parser: 400 for `tool_choice: "required"`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from tests.conftest import asgi_client
from tests.fakes.llm_server import USAGE, FakeLLMServer, Reply
from tests.helpers.accounts import API, Account, new_account
from tests.helpers.apps import chat_app
from tests.helpers.business import owner_with_business, roadmap_request
from tests.helpers.databases import fresh_database_url
from tests.helpers.sse import ChatStream, chat


def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


def call_delta(**call: Any) -> dict[str, Any]:
    return delta({"tool_calls": [call]})


RECORD_ARGS = {"type": "income", "amount": 150000, "category": "Penjualan", "note": "Kopi ☕ susu"}


async def transactions(client: httpx.AsyncClient, owner: Account) -> list[dict[str, Any]]:
    r = await client.get(f"{API}/finance/transactions", headers=owner.headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def messages(client: httpx.AsyncClient, owner: Account, s: ChatStream) -> list[dict]:
    session_id = s.first("session")["session_id"]
    r = await client.get(f"{API}/chat/sessions/{session_id}/messages", headers=owner.headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def sent_back(fake: FakeLLMServer) -> dict[str, Any]:
    """The assistant message with tool calls that the second request sent back."""
    second = fake.requests[1]["messages"]
    return next(m for m in second if m["role"] == "assistant" and m.get("tool_calls"))


def tool_results(fake: FakeLLMServer) -> list[dict[str, Any]]:
    return [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]


async def one_recorded_sale(
    client: httpx.AsyncClient, fake: FakeLLMServer, *chunks: dict[str, Any] | str
) -> tuple[Account, ChatStream]:
    """A turn whose first response is `chunks` (a record_transaction call), then text."""
    owner = await owner_with_business(client)
    fake.script(Reply.of_chunks(*chunks), Reply.of_text("Sudah dicatat."))
    s = await chat(client, owner.headers, "catat penjualan kopi 150 ribu")
    assert s.names[-1] == "done", s.events
    rows = await transactions(client, owner)
    assert [(t["amount"], t["note"]) for t in rows] == [(150000, "Kopi ☕ susu")]
    assert s.first("tool_result")["name"] == "record_transaction"
    assert not any(r["is_error"] for r in s.all("tool_result")), s.all("tool_result")
    return owner, s


# --- tool calls -----------------------------------------------------------------------------


async def test_whole_call_in_one_delta(ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer):
    """Groq, Ollama: the call comes complete in one delta, two calls in one delta."""
    owner = await owner_with_business(ai_client)
    calls = [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "function": {"name": "record_transaction", "arguments": json.dumps(RECORD_ARGS)},
        },
        {
            "index": 1,
            "id": "call_b",
            "type": "function",
            "function": {"name": "list_categories", "arguments": "{}"},
        },
    ]
    fake_llm.script(
        Reply.of_chunks(delta({"role": "assistant", "tool_calls": calls}), delta({}, "tool_calls")),
        Reply.of_text("Beres."),
    )
    s = await chat(ai_client, owner.headers, "catat dan tunjukkan kategori")
    assert s.names[-1] == "done", s.events
    assert [(c["id"], c["name"]) for c in s.all("tool_call")] == [
        ("call_a", "record_transaction"),
        ("call_b", "list_categories"),
    ]
    assert all(not r["is_error"] for r in s.all("tool_result"))
    assert len(await transactions(ai_client, owner)) == 1
    assert [m["tool_call_id"] for m in tool_results(fake_llm)] == ["call_a", "call_b"]


async def test_arguments_split_mid_token(ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer):
    """OpenAI: arguments in fragments of any size, here one character each, split inside
    keys, numbers and a multi-byte character."""
    args = json.dumps(RECORD_ARGS, ensure_ascii=False)
    chunks = [
        call_delta(
            index=0,
            id="call_x",
            type="function",
            function={"name": "record_transaction", "arguments": ""},
        )
    ]
    chunks += [call_delta(index=0, function={"arguments": ch}) for ch in args]
    await one_recorded_sale(ai_client, fake_llm, *chunks, delta({}, "tool_calls"))
    assert json.loads(sent_back(fake_llm)["tool_calls"][0]["function"]["arguments"]) == RECORD_ARGS


async def test_deltas_without_index_or_id(ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer):
    """Deltas with no `index` and no `id` (some Gemini-compatible proxies): fragments
    continue the call until a delta names a new tool; ids are made up, and the tool result
    answers the id that was sent back."""
    args = json.dumps(RECORD_ARGS)
    _, s = await one_recorded_sale(
        ai_client,
        fake_llm,
        delta({"tool_calls": [{"type": "function", "function": {"name": "record_transaction"}}]}),
        delta({"tool_calls": [{"function": {"arguments": args[:20]}}]}),
        delta({"tool_calls": [{"function": {"arguments": args[20:]}}]}),
        delta({"tool_calls": [{"function": {"name": "list_categories", "arguments": "{}"}}]}),
        delta({}, "tool_calls"),
    )
    names = [c["name"] for c in s.all("tool_call")]
    assert names == ["record_transaction", "list_categories"]
    ids = [c["id"] for c in s.all("tool_call")]
    assert all(ids) and len(set(ids)) == 2
    assert [c["id"] for c in sent_back(fake_llm)["tool_calls"]] == ids
    assert [m["tool_call_id"] for m in tool_results(fake_llm)] == ids


async def test_llama_cpp_repeats_id_and_name(ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer):
    """llama.cpp: every delta repeats the id and the name, beside `function_call`, and the
    response ends with `finish_reason` "stop"."""
    args = json.dumps(RECORD_ARGS)
    pieces = [args[i : i + 7] for i in range(0, len(args), 7)]
    chunks = [
        delta(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_llama",
                        "type": "function",
                        "function": {"name": "record_transaction", "arguments": p},
                    }
                ],
                "function_call": {"name": "record_transaction", "arguments": p},
            }
        )
        for p in pieces
    ]
    _, s = await one_recorded_sale(ai_client, fake_llm, *chunks, delta({}, "stop"))
    assert s.first("tool_call")["id"] == "call_llama"
    assert sent_back(fake_llm)["tool_calls"][0]["function"]["name"] == "record_transaction"


async def test_legacy_function_call_only(ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer):
    """A server that streams only the legacy `function_call` field."""
    args = json.dumps(RECORD_ARGS)
    await one_recorded_sale(
        ai_client,
        fake_llm,
        delta({"function_call": {"name": "record_transaction", "arguments": args[:10]}}),
        delta({"function_call": {"arguments": args[10:]}}),
        delta({}, "function_call"),
    )


async def test_arguments_as_an_object(ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer):
    """Ollama (older versions) and some proxies: `arguments` is a JSON object."""
    await one_recorded_sale(
        ai_client,
        fake_llm,
        call_delta(
            index=0,
            id="call_o",
            type="function",
            function={"name": "record_transaction", "arguments": RECORD_ARGS},
        ),
        delta({}, "stop"),
    )
    assert json.loads(sent_back(fake_llm)["tool_calls"][0]["function"]["arguments"]) == RECORD_ARGS


async def test_finish_reason_missing_with_tool_calls(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
):
    """The stream ends with no `finish_reason` at all: the calls that came are run."""
    await one_recorded_sale(
        ai_client,
        fake_llm,
        call_delta(
            index=0,
            id="call_n",
            type="function",
            function={"name": "record_transaction", "arguments": json.dumps(RECORD_ARGS)},
        ),
    )


# --- text, reasoning, usage, keep-alives -----------------------------------------------------


async def test_reasoning_is_never_shown_saved_or_sent_back(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
):
    """DeepSeek: `reasoning_content` first (vLLM, OpenRouter: `reasoning`), then the
    answer. Only the answer is streamed, saved and sent back in the history."""
    owner = await new_account(ai_client)
    fake_llm.script(
        Reply.of_chunks(
            delta({"role": "assistant", "content": None, "reasoning_content": "Hmm, RAHASIA1 "}),
            delta({"reasoning_content": "pikir lagi.", "content": None}),
            delta({"reasoning": "RAHASIA2"}),
            delta({"content": "Omzet Ibu "}),
            delta({"content": "naik."}, "stop"),
        ),
        Reply.of_text("Baik."),
    )
    s = await chat(ai_client, owner.headers, "bagaimana omzet?")
    assert s.names[-1] == "done" and s.text == "Omzet Ibu naik."
    assert s.first("message")["content"] == "Omzet Ibu naik."
    saved = await messages(ai_client, owner, s)
    assert [m["content"] for m in saved] == ["bagaimana omzet?", "Omzet Ibu naik."]
    assert "RAHASIA" not in json.dumps(s.events) + json.dumps(saved)
    await chat(ai_client, owner.headers, "lalu?", s.first("session")["session_id"])
    assert "RAHASIA" not in json.dumps(fake_llm.requests[1])


async def test_usage_chunk_with_empty_choices(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
):
    """OpenAI: with `include_usage`, a last chunk with `choices: []` and the usage."""
    owner = await new_account(ai_client)
    fake_llm.script(
        Reply.of_chunks(
            delta({"role": "assistant", "content": "Halo"}),
            delta({}, "stop"),
            {"choices": [], "usage": {**USAGE, "prompt_tokens": 321}},
        )
    )
    s = await chat(ai_client, owner.headers, "halo")
    assert s.names[-1] == "done" and s.text == "Halo"
    assert fake_llm.requests[0]["stream_options"] == {"include_usage": True}
    saved = await messages(ai_client, owner, s)
    assert (saved[1]["prompt_tokens"], saved[1]["completion_tokens"]) == (321, 5)


async def test_groq_usage_in_x_groq(ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer):
    owner = await new_account(ai_client)
    fake_llm.script(
        Reply.of_chunks(
            delta({"role": "assistant", "content": "Halo"}),
            {
                **delta({}, "stop"),
                "x_groq": {"id": "req_1", "usage": {**USAGE, "prompt_tokens": 77}},
            },
        )
    )
    s = await chat(ai_client, owner.headers, "halo")
    saved = await messages(ai_client, owner, s)
    assert (saved[1]["prompt_tokens"], saved[1]["completion_tokens"]) == (77, 5)


async def test_keep_alive_comments(ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer):
    """OpenRouter: SSE comments while the model thinks, and between chunks."""
    owner = await new_account(ai_client)
    fake_llm.script(
        Reply.of_chunks(
            ": OPENROUTER PROCESSING",
            ": OPENROUTER PROCESSING",
            delta({"role": "assistant", "content": "Siap"}),
            ": keep-alive",
            delta({"content": ", Bu."}, "stop"),
        )
    )
    s = await chat(ai_client, owner.headers, "halo")
    assert s.names[-1] == "done" and s.text == "Siap, Bu."


# --- errors and refusals ---------------------------------------------------------------------


async def test_error_object_inside_a_200_stream(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
):
    """OpenRouter: the upstream fails mid-answer; the stream carries an error object. The
    turn ends with its code, the text so far is saved as partial, and the provider's own
    words reach the log (not the owner)."""
    owner = await new_account(ai_client)
    failure = {
        "error": {"code": 502, "message": "Upstream provider UPSTREAM-XYZ went away"},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
    fake_llm.script(
        Reply.of_chunks(delta({"role": "assistant", "content": "Sebagian jawa"}), failure)
    )
    with structlog.testing.capture_logs() as logs:
        s = await chat(ai_client, owner.headers, "halo")
    assert s.names[-1] == "error" and s.first("error")["code"] == "llm_error"
    assert "UPSTREAM-XYZ" not in json.dumps(s.events)
    assert any("UPSTREAM-XYZ" in str(e.get("detail")) for e in logs if e["event"] == "llm_error")
    saved = await messages(ai_client, owner, s)
    assert (saved[1]["status"], saved[1]["content"]) == ("partial", "Sebagian jawa")


async def test_empty_answer_with_tools_is_asked_again_without(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
):
    """llama.cpp's chatml-function-calling with tools on "auto" can only call a tool: its
    text branch ends at once. An empty answer is asked again with `tool_choice: "none"`
    (for that request only); a second empty answer is an error, not a blank reply."""
    owner = await new_account(ai_client)
    empty = Reply.of_chunks(delta({"role": "assistant", "content": ""}, "stop"))
    fake_llm.script(empty, Reply.of_text("Ada jawabannya."), empty, empty)
    s = await chat(ai_client, owner.headers, "halo")
    assert s.names[-1] == "done" and s.text == "Ada jawabannya."
    assert [r["tool_choice"] for r in fake_llm.requests] == ["auto", "none"]
    assert all(r["tools"] for r in fake_llm.requests)

    s = await chat(ai_client, owner.headers, "lagi", s.first("session")["session_id"])
    assert s.first("error")["code"] == "llm_empty_response"
    assert [r["tool_choice"] for r in fake_llm.requests[2:]] == ["auto", "none"]
    saved = await messages(ai_client, owner, s)
    assert saved[-1]["status"] == "error"


# Refusals are remembered for the life of the process (the LLM client's), so these
# tests run an app of their own.


NAMED = {"type": "function", "function": {"name": "save_roadmap"}}


@pytest.mark.parametrize(
    ("refusal", "choices", "refusals"),
    [
        ("broken_stream", ["required", NAMED, NAMED], ["required"]),
        ("http_400", ["required", NAMED, "auto", "auto"], ["required", "named"]),
    ],
)
async def test_required_tool_choice_refused(
    tmp_path: Path,
    fake_llm: FakeLLMServer,
    refusal: str,
    choices: list[Any],
    refusals: list[str],
) -> None:
    """Roadmap generation asks for `tool_choice: "required"`. llama.cpp's server raises
    inside a 200 stream (a keep-alive, then the connection breaks), but takes the one
    tool by name; a server
    without forced calls answers 400 to both. Each refusal is logged once and remembered
    (the second roadmap goes straight to what works), and both roadmaps are saved.

    On a database of its own: on the suite's, another app's roadmap worker (a process
    with no memory of the refusal) may claim the request."""
    fake_llm.refuse_tool_choice = refusal
    async with (
        fresh_database_url(tmp_path, "refusal") as url,
        chat_app(url, tmp_path / "data", fake_llm) as app,
        asgi_client(app) as client,
    ):
        with structlog.testing.capture_logs() as logs:
            first = await owner_with_business(client, name="Warung Tolak Satu")
            assert (await roadmap_request(client, first))["status"] == "succeeded"
            second = await owner_with_business(client, name="Warung Tolak Dua")
            assert (await roadmap_request(client, second))["status"] == "succeeded"
        r = await client.get(f"{API}/milestones", headers=first.headers)
        assert len(r.json()["items"]) == 4
    assert [body.get("tool_choice") for body in fake_llm.roadmap_requests] == choices
    refused = [e["choice"] for e in logs if e["event"] == "llm_tool_choice_refused"]
    assert refused == refusals


async def test_stream_options_refused(
    database_url: str, tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    """A server that predates `stream_options` answers 400: asked again without it (once
    per process), and the turn goes on with no usage saved."""
    fake_llm.refuse_stream_options = True
    async with (
        chat_app(database_url, tmp_path / "data", fake_llm) as app,
        asgi_client(app) as client,
    ):
        owner = await new_account(client)
        with structlog.testing.capture_logs() as logs:
            s = await chat(client, owner.headers, "halo")
            again = await chat(client, owner.headers, "lagi", s.first("session")["session_id"])
        assert s.names[-1] == "done" and again.names[-1] == "done"
        saved = await messages(client, owner, s)
    assert saved[-1]["prompt_tokens"] is None
    assert ["stream_options" in body for body in fake_llm.requests] == [True, False, False]
    assert [e["event"] for e in logs].count("llm_stream_options_refused") == 1


async def test_long_text_limits_are_not_sent_in_tool_schemas(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    """llama.cpp compiles a forced tool's schema into a grammar and refuses one with
    `maxLength: 2000` (the roadmap's milestone description). Limits above 300 are sent
    as 300 (the model is asked for less than is accepted); shorter ones stay."""
    await owner_with_business(ai_client, name="Warung Skema")
    for _ in range(300):
        if fake_llm.roadmap_requests:
            break
        await asyncio.sleep(0.1)
    (tool,) = fake_llm.roadmap_requests[0]["tools"]
    text = json.dumps(tool)
    milestone = tool["function"]["parameters"]["$defs"]["MilestoneDraft"]["properties"]
    assert milestone["description"]["maxLength"] == 300
    assert milestone["title"]["maxLength"] == 200
    assert '"maxLength": 2000' not in text
