"""Reading the chat event stream the way a client does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

API = "/api/v1"


@dataclass
class ChatStream:
    status: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    body: Any = None  # the JSON error body when the request was refused

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def first(self, name: str) -> dict[str, Any]:
        return next(data for n, data in self.events if n == name)

    def all(self, name: str) -> list[dict[str, Any]]:
        return [data for n, data in self.events if n == name]

    @property
    def text(self) -> str:
        return "".join(d["text"] for d in self.all("delta"))


def parse_sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


async def chat(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    content: str,
    session_id: str | None = None,
) -> ChatStream:
    body = {"session_id": session_id, "content": content}
    async with client.stream("POST", f"{API}/chat/stream", json=body, headers=headers) as r:
        raw = (await r.aread()).decode()
    if r.status_code != 200:
        return ChatStream(r.status_code, body=json.loads(raw))
    assert r.headers["content-type"].startswith("text/event-stream")
    return ChatStream(r.status_code, parse_sse(raw))
