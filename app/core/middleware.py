"""Request context: request id, access log line, and the last line of defence for errors.

Written as plain ASGI (not BaseHTTPMiddleware) so that streaming responses pass through
untouched and the context variables bound here are the ones the endpoint sees.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
# A client-supplied id is kept only if it is short and plain, so it cannot forge log lines.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

log = structlog.stdlib.get_logger("app.access")
error_log = structlog.stdlib.get_logger("app.errors")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID_REQUEST_ID.match(text) else None
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_code = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_code = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                error_log.exception(
                    "unhandled_exception", method=scope["method"], path=scope["path"]
                )
                if response_started:
                    raise  # headers are gone; the server closes the connection
                status_code = 500
                response = JSONResponse(
                    {"detail": "Internal server error", "request_id": request_id},
                    status_code=500,
                    headers={REQUEST_ID_HEADER: request_id},
                )
                await response(scope, receive, send)
            finally:
                self._access_line(scope, status_code, started)

    @staticmethod
    def _access_line(scope: Scope, status_code: int, started: float) -> None:
        state = scope.get("state", {})
        fields: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if client := scope.get("client"):
            fields["client"] = client[0]
        if user_id := state.get("user_id"):
            fields["user_id"] = str(user_id)
        if status_code >= 500:
            log.error("request", **fields)
        else:
            log.info("request", **fields)


class BodySizeLimitMiddleware:
    """Refuse request bodies over `max_bytes` with a JSON 413.

    A declared Content-Length over the limit is refused before the body is read; a
    chunked body is counted as it arrives and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"Request body too large (limit {self.max_bytes} bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit():
                    await JSONResponse({"detail": "Invalid Content-Length"}, 400)(
                        scope, receive, send
                    )
                    return
                if int(value) > self.max_bytes:
                    await JSONResponse({"detail": self._too_large()}, 413)(scope, receive, send)
                    return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(status_code=413, detail=self._too_large())
            return message

        await self.app(scope, counted_receive, send)
