"""Error bodies of the web client's API: `{"detail": ..., "message": "<one line>"}`.

The client's toasts show `message`. It is added at the edge, to every JSON error answer
under the adapter's prefix, whoever produced it (a service, validation, the body-size
limit, an unknown path), so no route has to think of it; `detail` stays as it was.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import FieldProblem

MAX_MESSAGE_CHARS = 200
MAX_PROBLEMS_NAMED = 3
# Where a field error happened, as FastAPI reports it; the client needs only the field.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


class ClientError(BaseModel):
    """An error answer of the web client's API."""

    detail: list[FieldProblem] | str
    message: str


def public_message(status: int, detail: Any) -> str:
    """One line a person can read: our own text of the error, or for invalid input the
    first fields and what is wrong with them (never the submitted values)."""
    if isinstance(detail, str) and detail.strip():
        text = detail
    elif isinstance(detail, list) and detail:
        named = [_problem(p) for p in detail[:MAX_PROBLEMS_NAMED]]
        rest = len(detail) - len(named)
        text = "; ".join(named) + (f" (and {rest} more)" if rest > 0 else "")
    else:
        text = _phrase(status)
    line = " ".join(text.split())
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"
    return line


def _problem(problem: Any) -> str:
    if not isinstance(problem, dict):
        return "invalid input"
    loc = [str(part) for part in problem.get("loc") or []]
    if loc and loc[0] in _LOCATIONS:
        loc = loc[1:]
    msg = str(problem.get("msg") or "invalid value")
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Request failed"


class ErrorMessageMiddleware:
    """Add `message` to JSON error bodies of the paths under `prefix`.

    Error bodies are small and complete: this one is held back until it is whole, then
    sent with the message; every other answer (the chat stream among them) passes
    through untouched.
    """

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    def _applies(self, scope: Scope) -> bool:
        if scope["type"] != "http":
            return False
        path: str = scope["path"]
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._applies(scope):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_with_message(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if message["status"] >= 400 and headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = _with_message(b"".join(chunks), held["status"])
                MutableHeaders(scope=held)["content-length"] = str(len(body))
                start, held = held, None
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, send_with_message)


def _with_message(body: bytes, status: int) -> bytes:
    try:
        content = json.loads(body)
    except ValueError:
        return body
    if not isinstance(content, dict) or "message" in content:
        return body
    content["message"] = public_message(status, content.get("detail"))
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
