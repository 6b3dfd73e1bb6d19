"""Bounds on request heads and slow clients: the HTTP protocol `telaten serve` runs.

uvicorn's httptools protocol feeds whatever a client sends to the parser, which builds a
header (and uvicorn the URL) by concatenating the pieces as they arrive: a 100 MB header
holds the event loop for half a minute, in quadratic time. Nor does it time anything out
before a response: a client that trickles its head, or stops halfway through its body,
holds the connection for good. This subclass adds, per connection:

- Size: at most `HTTP_MAX_HEAD_BYTES` of a request head (request line, headers and the
  blank line) are fed to the parser. A head that is not complete by then is answered 431,
  or 414 when the URL is most of it, and the connection is closed. The count is exact for
  a head that starts a read; one pipelined behind another request in the same read may
  get up to one more limit's worth. A chunked body's trailer (headers after the body) and
  its chunk extensions are held to the same limit.
- Time: a head must be complete within `HTTP_HEAD_TIMEOUT_SECONDS` of the connection
  opening, or, on a kept-alive connection, of its first byte (408, or a plain close when
  no request had begun). Idle keep-alive connections are uvicorn's `timeout_keep_alive`.
- A body that stops arriving for `HTTP_BODY_IDLE_TIMEOUT_SECONDS` ends its request (408
  if no response has started; the application sees a disconnect) and the connection.
  Waits that are the server's own (reading paused while the application is busy with
  what it has, or `Expect: 100-continue` not yet answered) do not count.

uvicorn's own 400 for a malformed request is JSON here too, and no error answer is ever
written into the middle of another one (with pipelining the connection is closed once the
answers in progress are done).

`telaten serve` passes this class to uvicorn as an import string, so that the processes
of `--workers N` and `--reload`, which load the configuration themselves, use it too.
`data_received` follows uvicorn 0.54's own; check it against a newer uvicorn's when
upgrading (tests/test_http_limits.py exercises it over real sockets). Anything uvicorn
does not hand this class (TLS, the number of connections, a reverse proxy's own limits)
belongs to the deployment in front of the service.
"""

from __future__ import annotations

import asyncio
import json
from asyncio import TimerHandle
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from app.core.config import get_settings

# After refusing an oversized head, keep reading (and discarding) what the client is still
# sending for this long before closing: closing with unread input makes the kernel reset
# the connection, and the client may lose the answer.
LINGER_SECONDS = 2.0


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with request-head size and time limits, and a body
    idle timeout (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = get_settings()
        self.max_head_bytes = settings.HTTP_MAX_HEAD_BYTES
        self.head_timeout = settings.HTTP_HEAD_TIMEOUT_SECONDS
        self.body_idle_timeout = settings.HTTP_BODY_IDLE_TIMEOUT_SECONDS

        self._in_head = True  # waiting for (the rest of) a request head
        self._head_bytes = 0  # bytes fed to the parser since that wait began
        self._head_begun = False  # the parser has seen the first byte of that request
        self._head_timer: TimerHandle | None = None

        self._body_timer: TimerHandle | None = None
        self._body_active_at = 0.0  # when the body last made progress
        self._body_waited_on_us = False  # the last check found the server, not the client, idle
        self._fed_body = False  # the piece being fed held body data
        self._frame_bytes = 0  # body-phase bytes since the last body data (framing, trailers)

        self._refused = False  # answered and closing: further input is discarded
        self._linger_timer: TimerHandle | None = None

    # Connection lifecycle

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # asyncio declares BaseTransport
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._refused:
            return
        if self._in_head:
            self._arm_head_timer()  # the first byte of a request (no-op when armed)
        else:
            self._body_active_at = self.loop.time()
        view = memoryview(data)
        while view:
            # Feed a head at most up to the limit; other input in pieces of the same size,
            # so that a head starting in the middle of a piece (pipelining) is bounded too.
            was_in_head = self._in_head
            room = self.max_head_bytes - self._head_bytes if was_in_head else self.max_head_bytes
            piece, view = view[:room], view[room:]
            if was_in_head:
                self._head_bytes += len(piece)
            self._fed_body = False
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserError:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
                return
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            if self._refused or self.transport.is_closing():
                return
            if self._in_head:
                if self._head_bytes >= self.max_head_bytes:
                    self._refuse_head()
                    return
            elif not was_in_head:  # the whole piece was body or its framing
                self._frame_bytes = 0 if self._fed_body else self._frame_bytes + len(piece)
                if self._frame_bytes > self.max_head_bytes:
                    self._refuse_framing()
                    return
        if not self._in_head and self._body_timer is None:
            self._body_timer = self.loop.call_later(self.body_idle_timeout, self._body_timed_out)

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True
        self._arm_head_timer()  # a pipelined request that began inside an earlier read

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_begun = False
        self._cancel(self._head_timer)
        self._head_timer = None
        self._frame_bytes = 0
        self._body_active_at = self.loop.time()
        self._body_waited_on_us = False
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._fed_body = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._cancel(self._body_timer)
        self._body_timer = None
        super().on_message_complete()

    # Limits

    def _refuse_head(self) -> None:
        url = getattr(self, "url", b"")  # set by on_message_begin
        limit = self.max_head_bytes
        if self._head_begun and len(url) * 2 > self._head_bytes:
            status, detail = 414, f"URL too long (request head limit {limit} bytes)"
        else:
            status, detail = 431, f"Request header fields too large (limit {limit} bytes)"
        self.logger.warning("%s; closing the connection from %s", detail, self._peer())
        if self._responding():
            self._close_after_response()
        else:
            self._answer_and_linger(status, detail)

    def _refuse_framing(self) -> None:
        detail = f"Request trailer fields too large (limit {self.max_head_bytes} bytes)"
        self.logger.warning("%s; closing the connection from %s", detail, self._peer())
        if self._current_cycle_unanswered():
            self._end_current_cycle()
            self._answer_and_linger(431, detail)
        else:
            self._close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self._refused or self.transport.is_closing():
            return
        if self.flow.read_paused:  # not reading is our doing (a pipelined request waits)
            self._arm_head_timer()
            return
        if self._responding():
            self._close_after_response()
            return
        if self._head_begun:
            self.logger.info("Request head not complete in time from %s", self._peer())
            self._write_error(408, "Request head not received in time")
        self._close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self._in_head or self._refused or self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        on_us = self.flow.read_paused or bool(cycle and cycle.waiting_for_100_continue)
        if on_us or self._body_waited_on_us:
            self._body_active_at = now  # the client gets a full period once we read again
        self._body_waited_on_us = on_us
        idle = now - self._body_active_at
        if idle < self.body_idle_timeout:
            self._body_timer = self.loop.call_later(
                self.body_idle_timeout - idle, self._body_timed_out
            )
            return
        self.logger.info("Request body stalled from %s", self._peer())
        if self._current_cycle_unanswered():
            self._end_current_cycle()
            self._write_error(408, "Request body not received in time")
        self._close()

    # Helpers

    def _responding(self) -> bool:
        """Whether a response on this connection is still being produced or written."""
        return self.cycle is not None and not self.cycle.response_complete

    def _current_cycle_unanswered(self) -> bool:
        """Whether the request being received is the one the application is running, and
        its response has not started (so an error answer may be written instead)."""
        return not self.pipeline and self.cycle is not None and not self.cycle.response_started

    def _end_current_cycle(self) -> None:
        """Make the application see a disconnect and drop whatever it sends later."""
        self.cycle.disconnected = True
        self.cycle.message_event.set()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    @staticmethod
    def _cancel(timer: TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger_timer):
            self._cancel(timer)
        self._head_timer = self._body_timer = self._linger_timer = None

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"

    def _write_error(self, status: int, detail: str) -> None:
        """A complete `{"detail": ...}` answer that closes the connection."""
        body = json.dumps({"detail": detail}).encode()
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a malformed request, as JSON like every other error, and
        # never in the middle of another answer.
        if self._in_head and self._responding():
            self._close_after_response()  # an earlier pipelined request's answer
            return
        if not self._in_head:  # a malformed body: its request ends here
            if not self._current_cycle_unanswered():
                self._close()
                return
            self._end_current_cycle()
        self._write_error(400, msg.rstrip("."))
        self._close()

    def _close(self) -> None:
        self._refused = True
        self._cancel_timers()
        self._unset_keepalive_if_required()
        self.transport.close()

    def _close_after_response(self) -> None:
        """An earlier (pipelined) request's answer is still being produced: stop reading,
        let it and the requests queued before this one finish, then close."""
        self._refused = True
        self._cancel_timers()
        self.cycle.keep_alive = False
        # On the transport itself: uvicorn's flow control resumes what it paused.
        self.transport.pause_reading()

    def _answer_and_linger(self, status: int, detail: str) -> None:
        """Answer, end our side, and discard input for a moment before closing."""
        self._refused = True
        self._cancel_timers()
        self._unset_keepalive_if_required()
        self._write_error(status, detail)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()
