"""A recording proxy between the service and a real OpenAI-compatible server.

The service talks to it as to any provider (`LLM_BASE_URL`); it relays each
`POST /v1/chat/completions` to the upstream server byte for byte, streaming, and records
what was asked, what came back and how long the upstream took. A test can also force the
next request's `tool_choice` to a named tool (`force_next`): a 270M model does not choose
tools well, and llama.cpp's server takes a named choice, so the test decides which tool
the model calls while the service runs as it would against any server.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Exchange:
    request: dict[str, Any]
    started: float
    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    first_byte: float | None = None
    finished: float | None = None

    @property
    def seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def chunks(self) -> list[dict[str, Any]]:
        """The streamed chunks (server-sent `data:` events) as JSON."""
        found = []
        for line in bytes(self.body).decode(errors="replace").splitlines():
            if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
                try:
                    found.append(json.loads(line[5:]))
                except json.JSONDecodeError:
                    continue
        return found

    def text(self) -> str:
        """The reply's text, as the chunks carried it."""
        return "".join(
            (c.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
            for c in self.chunks()
            if c.get("choices")
        )

    def arguments(self) -> str:
        """The tool-call arguments, as the chunks carried them."""
        parts = []
        for c in self.chunks():
            for choice in c.get("choices") or []:
                for call in choice.get("delta", {}).get("tool_calls") or []:
                    parts.append((call.get("function") or {}).get("arguments") or "")
        return "".join(parts)

    def usage(self) -> dict[str, Any] | None:
        found = [c["usage"] for c in self.chunks() if c.get("usage")]
        return found[-1] if found else None


class RecordingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._force: deque[str] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def force_next(self, tool: str) -> None:
        """The next request that offers `tool` gets a `tool_choice` naming it."""
        with self._lock:
            self._force.append(tool)

    def start(self) -> None:
        app = Starlette(routes=[Route("/v1/chat/completions", self._relay, methods=["POST"])])
        # Quiet: an upstream killed on purpose is relayed as a broken stream, not logged.
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="llm-proxy", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not (self._server.started and self._server.servers):
            if time.monotonic() > deadline:
                raise RuntimeError("the LLM proxy did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    async def _relay(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            offered = {(t.get("function") or {}).get("name") for t in body.get("tools") or []}
            if self._force and self._force[0] in offered:
                name = self._force.popleft()
                body["tool_choice"] = {"type": "function", "function": {"name": name}}
            exchange = Exchange(body, time.perf_counter())
            self.exchanges.append(exchange)
        client = httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10))
        upstream = await client.send(
            client.build_request("POST", f"{self.upstream}/chat/completions", json=body),
            stream=True,
        )
        exchange.status = upstream.status_code

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for piece in upstream.aiter_raw():
                    if exchange.first_byte is None:
                        exchange.first_byte = time.perf_counter()
                    exchange.body.extend(piece)
                    yield piece
            finally:
                exchange.finished = time.perf_counter()
                await upstream.aclose()
                await client.aclose()

        return StreamingResponse(
            relay(),
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", "text/event-stream"),
        )
