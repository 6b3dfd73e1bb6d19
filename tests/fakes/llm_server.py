"""A fake OpenAI-compatible LLM server for tests and benchmarks.

It serves `POST /v1/chat/completions` (streaming and not) on 127.0.0.1 from a thread of
its own, answers with replies a test scripts in advance, and records every request so a
test can assert what the agent sent (system prompt, history, tool schemas).

    fake.script(Reply.text("Halo!"), Reply.tool_call("get_my_account", {}))
    ... run the code under test ...
    assert fake.requests[0]["messages"][0]["role"] == "system"
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class ToolCallSpec:
    name: str
    arguments: str  # raw JSON text, so tests can send malformed JSON on purpose
    id: str = ""


@dataclass
class Reply:
    """One scripted answer to one chat-completions request."""

    text: str = ""
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    status: int = 200  # 429 / 500 ... to answer with an HTTP error instead
    stall_seconds: float = 0.0  # send nothing at all for this long first
    chunk_size: int = 8  # characters per streamed delta
    chunk_delay: float = 0.0  # seconds between streamed chunks
    stall_after_chunks: int | None = None  # stop sending (keep open) after N chunks
    # With stall_after_chunks: go on once this event is set (a test's "now continue").
    resume: threading.Event | None = None
    args_chunk_size: int = 16  # characters of tool-call arguments per streamed chunk
    die_after_chunks: int | None = None  # close the connection abruptly after N chunks
    raw_stream: bytes | None = None  # send exactly these bytes as the streamed body
    # Serve only a request whose JSON contains this text (e.g. one business's name), so
    # work left running by another test cannot take the reply.
    match: str | None = None

    @classmethod
    def of_text(cls, text: str, **kw: Any) -> Reply:
        return cls(text=text, **kw)

    @classmethod
    def tool_call(cls, name: str, arguments: dict[str, Any] | str, **kw: Any) -> Reply:
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return cls(tool_calls=[ToolCallSpec(name, raw)], **kw)

    @classmethod
    def tool_calls_of(cls, *calls: tuple[str, dict[str, Any] | str], **kw: Any) -> Reply:
        specs = [ToolCallSpec(n, a if isinstance(a, str) else json.dumps(a)) for n, a in calls]
        return cls(tool_calls=specs, **kw)

    @classmethod
    def roadmap(cls, size: int, match: str | None = None, title: str = "Langkah") -> Reply:
        """A valid `save_roadmap` call with `size` milestones of three tasks each."""
        return cls.tool_call(ROADMAP_TOOL, roadmap_arguments(size, title), match=match)

    @classmethod
    def of_chunks(cls, *chunks: dict[str, Any] | str, done: bool = True, **kw: Any) -> Reply:
        """A stream of exactly these chunks, as a provider documents its format: a dict
        is sent as one `data:` event (the `choices` list given in full), a string as is
        (an SSE comment such as `: keep-alive`, or a malformed line)."""
        return cls(raw_stream=sse_body(*chunks, done=done), **kw)

    @classmethod
    def error(cls, status: int) -> Reply:
        return cls(status=status)

    @classmethod
    def stall(cls, seconds: float) -> Reply:
        return cls(text="too late", stall_seconds=seconds)


ROADMAP_TOOL = "save_roadmap"

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def sse_body(*chunks: dict[str, Any] | str, done: bool = True) -> bytes:
    """Server-sent events of chat-completion chunks (see `Reply.of_chunks`)."""
    events = []
    for chunk in chunks:
        if isinstance(chunk, str):
            events.append(chunk if chunk.endswith("\n\n") else chunk + "\n\n")
        else:
            body = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 0}
            body["model"] = "fake-model"
            events.append(f"data: {json.dumps({**body, **chunk})}\n\n")
    if done:
        events.append("data: [DONE]\n\n")
    return "".join(events).encode()


def roadmap_arguments(size: int, title: str = "Langkah") -> dict[str, Any]:
    return {
        "milestones": [
            {
                "title": f"{title} {n}",
                "description": f"Deskripsi {title.lower()} {n}",
                "difficulty": 1 + n % 5,
                "tasks": [f"Tugas {n}.{t}" for t in range(1, 4)],
            }
            for n in range(1, size + 1)
        ]
    }


def _offers_tool(body: dict[str, Any], name: str) -> bool:
    return any((tool.get("function") or {}).get("name") == name for tool in body.get("tools") or [])


def _roadmap_size(body: dict[str, Any]) -> int:
    """How many milestones the request's save_roadmap schema asks for."""
    for tool in body.get("tools") or []:
        function = tool.get("function") or {}
        if function.get("name") == ROADMAP_TOOL:
            milestones = function.get("parameters", {}).get("properties", {}).get("milestones")
            return int((milestones or {}).get("maxItems", 4))
    return 4


@dataclass
class Recorded:
    body: dict[str, Any]
    started: float
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return max(0.0, self.finished - self.started)


class FakeLLMServer:
    """Two channels: requests that offer the `save_roadmap` tool (roadmap generation,
    which runs in the background) have a script, a record and a default of their own
    (a valid roadmap of the size the schema asks for); every other request is chat."""

    def __init__(self, default_text: str = "Baik, Bu.") -> None:
        self.default = Reply.of_text(default_text)
        # Benchmarks (no script): a user message containing this marker is answered with
        # one call of `get_my_account`, and the turn's next request with the text.
        self.tool_marker: str | None = None
        self._script: deque[Reply] = deque()
        self._roadmap_script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.calls: list[Recorded] = []
        self.roadmap_calls: list[Recorded] = []
        self._ids = itertools.count(1)
        # How the server refuses `tool_choice`: None accepts every choice;
        # "broken_stream" answers "required" with a 200 stream that sends a keep-alive
        # comment and breaks (llama.cpp's server raises inside its stream; it takes a
        # tool named in the choice); "http_400" answers 400 to any choice but "auto"
        # and "none" (servers without forced calls).
        self.refuse_tool_choice: str | None = None
        # Whether streams end with a usage chunk when the request asks for one, and
        # whether asking is refused (400, as servers that predate the option answer).
        self.send_usage = True
        self.refuse_stream_options = False
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- scripting --------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def script_roadmap(self, *replies: Reply) -> None:
        with self._lock:
            self._roadmap_script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.calls.clear()
            self._roadmap_script.clear()
            self.roadmap_calls.clear()
            self.refuse_tool_choice = None
            self.send_usage = True
            self.refuse_stream_options = False

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c.body for c in self.calls]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def roadmap_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c.body for c in self.roadmap_calls]

    def _next(self, body: dict[str, Any]) -> Reply:
        """The first scripted reply this request may take (see `Reply.match`)."""
        roadmap = _offers_tool(body, ROADMAP_TOOL)
        script = self._roadmap_script if roadmap else self._script
        text = json.dumps(body, ensure_ascii=False) if script else ""
        for reply in script:
            if reply.match is None or reply.match in text:
                script.remove(reply)
                return reply
        if roadmap:
            return Reply.roadmap(_roadmap_size(body))
        messages = body.get("messages") or [{}]
        if (
            self.tool_marker
            and self.tool_marker in _last_user(body)
            and messages[-1].get("role") == "user"
        ):
            return Reply.tool_calls_of(("get_my_account", {}))  # then, with its result, text
        return self.default

    # --- server -----------------------------------------------------------------------

    @classmethod
    @contextmanager
    def running(cls, default_text: str = "Baik, Bu.") -> Iterator[FakeLLMServer]:
        """A started server, stopped when the block ends."""
        server = cls(default_text)
        server.start()
        try:
            yield server
        finally:
            server.stop()

    def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/_calls", self._calls_json, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-llm", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not (self._server.started and self._server.servers):
            if time.monotonic() > deadline:
                raise RuntimeError("fake LLM server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(10)

    async def _calls_json(self, request: Request) -> Response:
        """What a benchmark in another process needs: each call's last user message and
        the time the fake spent answering it."""
        with self._lock:
            calls = [{"last_user": _last_user(c.body), "seconds": c.seconds} for c in self.calls]
        return JSONResponse(calls)

    async def _completions(self, request: Request) -> Response:
        record = Recorded(await request.json(), time.perf_counter())
        with self._lock:
            roadmap = _offers_tool(record.body, ROADMAP_TOOL)
            (self.roadmap_calls if roadmap else self.calls).append(record)
            reply = self._next(record.body)
        if self.refuse_stream_options and "stream_options" in record.body:
            record.finished = time.perf_counter()
            message = "Unrecognized request argument supplied: stream_options"
            return JSONResponse({"error": {"message": message, "code": 400}}, 400)
        if self._refuses(record.body):
            record.finished = time.perf_counter()
            if self.refuse_tool_choice == "http_400":
                message = "tool_choice must be 'auto' or 'none'"
                return JSONResponse({"error": {"message": message, "code": 400}}, 400)
            return StreamingResponse(_broken_stream(), media_type="text/event-stream")
        if reply.stall_seconds:
            await asyncio.sleep(reply.stall_seconds)
        if reply.status != 200:
            record.finished = time.perf_counter()
            return JSONResponse(
                {
                    "error": {
                        "message": f"scripted {reply.status}",
                        "type": "fake",
                        "code": reply.status,
                    }
                },
                status_code=reply.status,
                headers={"retry-after": "0"},
            )
        model = record.body.get("model", "fake-model")
        if not record.body.get("stream"):
            record.finished = time.perf_counter()
            return JSONResponse(self._completion(reply, model))
        return StreamingResponse(self._chunks(reply, model, record), media_type="text/event-stream")

    def _refuses(self, body: dict[str, Any]) -> bool:
        choice = body.get("tool_choice")
        if self.refuse_tool_choice == "broken_stream":
            return bool(body.get("stream")) and choice == "required"
        return bool(self.refuse_tool_choice) and choice not in (None, "auto", "none")

    def _completion(self, reply: Reply, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in reply.tool_calls
            ]
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                }
            ],
            "usage": USAGE,
        }

    async def _chunks(self, reply: Reply, model: str, record: Recorded):  # type: ignore[no-untyped-def]
        cid = f"chatcmpl-{next(self._ids)}"
        if reply.raw_stream is not None:
            record.finished = time.perf_counter()
            yield reply.raw_stream
            return

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            body = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(body)}\n\n".encode()

        def pieces() -> Iterator[bytes]:
            """The stream's chunks, made as they are sent (a reply of megabytes is
            millions of chunks; building them all first would stall the stream)."""
            yield chunk({"role": "assistant", "content": ""})
            text = reply.text
            for i in range(0, len(text), max(1, reply.chunk_size)):
                yield chunk({"content": text[i : i + reply.chunk_size]})
            for index, call in enumerate(reply.tool_calls):
                call_id = call.id or f"call_{next(self._ids)}"
                function = {"name": call.name, "arguments": ""}
                start = {"index": index, "id": call_id, "type": "function", "function": function}
                yield chunk({"tool_calls": [start]})
                args = call.arguments
                size = max(1, reply.args_chunk_size)
                for i in range(0, len(args), size):
                    part = {"index": index, "function": {"arguments": args[i : i + size]}}
                    yield chunk({"tool_calls": [part]})
            yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
            if self.send_usage and (record.body.get("stream_options") or {}).get("include_usage"):
                body = {"id": cid, "object": "chat.completion.chunk", "choices": []}
                yield f"data: {json.dumps({**body, 'usage': USAGE})}\n\n".encode()
            yield b"data: [DONE]\n\n"

        try:
            for n, piece in enumerate(pieces()):
                if reply.stall_after_chunks is not None and n == reply.stall_after_chunks:
                    await _stall(reply.resume)
                if reply.die_after_chunks is not None and n == reply.die_after_chunks:
                    raise ConnectionResetError("scripted death")
                if reply.chunk_delay and n:
                    await asyncio.sleep(reply.chunk_delay)
                yield piece
        finally:
            record.finished = time.perf_counter()


async def _broken_stream() -> AsyncIterator[bytes]:
    """A keep-alive comment, then the connection breaks (no chunk, no end of body)."""
    yield b": ping\n\n"
    await asyncio.sleep(0.05)
    raise ConnectionResetError("scripted refusal inside the stream")


async def _stall(resume: threading.Event | None) -> None:
    """Send nothing (the connection stays open) for an hour, or until `resume` is set."""
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline and not (resume is not None and resume.is_set()):
        await asyncio.sleep(0.02)


def _last_user(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    return content if isinstance(content, str) else json.dumps(content)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run the fake LLM server (for benchmarks).")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--text", default="Baik, Bu. Catat pemasukan hari ini, lalu cek stok.")
    parser.add_argument("--tool-marker", help="answer messages containing it with a tool call")
    args = parser.parse_args()
    fake = FakeLLMServer(default_text=args.text)
    fake.tool_marker = args.tool_marker
    fake.port = args.port
    fake.start()
    print(f"fake LLM on {fake.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()
