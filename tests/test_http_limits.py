"""Huge and slow clients against a real `telaten serve`, over raw sockets.

The request head (request line and headers) is bounded in size (431, or 414 for a long
URL) and in time (408 or a plain close), a stalled body and an oversized chunked trailer
end their request, and none of it touches keep-alive, pipelining or a long chat stream.
The same protection holds with `--workers 2` and with `--reload`, whose processes load
the HTTP protocol themselves.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, new_account
from tests.helpers.databases import fresh_database_url
from tests.helpers.server import ServerProcess, served_env

# The HTTP protocol's limits are the same whatever database the service uses.
pytestmark = [pytest.mark.once, pytest.mark.slow]

LIMIT = 32_768  # HTTP_MAX_HEAD_BYTES of the servers below (the default)
TIMEOUT = 2  # their HTTP_HEAD_TIMEOUT_SECONDS and HTTP_BODY_IDLE_TIMEOUT_SECONDS
BOUND = 30  # the longest any wait below may take (timeouts are TIMEOUT; this is slack)


def limited_env(url: str, workdir: Path, llm_base_url: str) -> dict[str, str]:
    return served_env(
        url,
        workdir,
        llm_base_url,
        HTTP_MAX_HEAD_BYTES=str(LIMIT),
        HTTP_HEAD_TIMEOUT_SECONDS=str(TIMEOUT),
        HTTP_BODY_IDLE_TIMEOUT_SECONDS=str(TIMEOUT),
    )


@pytest.fixture(scope="module")
async def served(
    tmp_path_factory: pytest.TempPathFactory, fake_llm_server: FakeLLMServer
) -> AsyncIterator[ServerProcess]:
    """One `telaten serve` (one worker) with short head and body timeouts."""
    workdir = tmp_path_factory.mktemp("http-limits")
    async with fresh_database_url(workdir, "http") as url:
        server = ServerProcess(limited_env(url, workdir, fake_llm_server.base_url), workdir)
        try:
            await asyncio.to_thread(server.wait_ready, 120)
            yield server
        finally:
            server.stop()


def head(target: str = "/health", *headers: str, close: bool = True) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: telaten.test", *headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def head_of_size(size: int) -> bytes:
    """`GET /health` whose head (request line, headers, final blank line) is `size` bytes."""
    bare = head("/health", "X-Pad: ")
    return head("/health", "X-Pad: " + "p" * (size - len(bare)))


def status(answer: bytes) -> int | None:
    """The status code of the first response in `answer` (None if there is none)."""
    line = answer.split(b"\r\n", 1)[0]
    if not line.startswith(b"HTTP/1.1 "):
        return None
    return int(line.split()[1])


def detail(answer: bytes) -> str:
    """The `detail` of a JSON error answer."""
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    return body["detail"]


async def exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a new connection; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), BOUND)
    finally:
        writer.close()


def send_huge_header(port: int, size: int, sending: threading.Event) -> tuple[bytes, int]:
    """`GET /health` with one header of `size` bytes, sent as fast as the server takes it,
    on a blocking socket (so that an answer that arrived before the server closed is
    still read after a failed send); returns the answer and how much was sent."""
    chunk = b"a" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: telaten.test\r\nX-Huge: ")
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
                if sent >= 1 << 20:
                    sending.set()
            sock.sendall(b"\r\nConnection: close\r\n\r\n")
        except OSError:
            pass  # the server stopped reading and closed
        finally:
            sending.set()
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except OSError:
            pass
    return answer, sent


async def huge_header_meanwhile_health(port: int, size: int) -> tuple[bytes, bytes]:
    """A huge header on one connection and, while it is being sent, /health on another."""
    sending = threading.Event()
    big = asyncio.create_task(asyncio.to_thread(send_huge_header, port, size, sending))
    await asyncio.to_thread(sending.wait, BOUND)
    health = await exchange(port, head("/health"))
    answer, _ = await asyncio.wait_for(big, 120)
    return answer, health


async def slow_loris(port: int, count: int) -> tuple[list[bytes], list[int]]:
    """`count` connections that send a request line and then one header byte every 0.3 s,
    and meanwhile normal /health requests; the first thing each slow connection reads
    (an answer, or b"" when closed), and the normal requests' statuses."""

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: telaten.test\r\nX-Slow: ")
        read = asyncio.ensure_future(reader.read(1024))
        try:
            async with asyncio.timeout(BOUND):
                while not read.done():
                    await asyncio.wait({read}, timeout=0.3)
                    if not read.done():
                        writer.write(b"z")
                        await writer.drain()
                return read.result()
        except ConnectionError:
            return b""  # closed by the server: our next byte was refused
        except TimeoutError:
            return b"<still open>"
        finally:
            read.cancel()
            writer.close()

    async def normal() -> list[int]:
        statuses = []
        for _ in range(5):
            statuses.append(status(await exchange(port, head("/health"))))
            await asyncio.sleep(0.2)
        return statuses

    *answers, statuses = await asyncio.gather(*(one() for _ in range(count)), normal())
    return answers, statuses


def closed_for_slowness(answer: bytes) -> bool:
    return answer == b"" or status(answer) == 408


async def test_a_huge_header_is_refused_while_health_answers(served: ServerProcess) -> None:
    answer, health = await huge_header_meanwhile_health(served.port, 16 << 20)
    assert status(health) == 200
    assert status(answer) == 431, answer[:200]
    assert "too large" in detail(answer)


async def test_head_size_limit_is_exact_and_a_long_url_is_414(served: ServerProcess) -> None:
    # A head of exactly the limit is served; one byte more is refused, and so is 1 MB.
    answer = await exchange(served.port, head_of_size(LIMIT))
    assert status(answer) == 200, answer[:200]
    answer = await exchange(served.port, head_of_size(LIMIT + 1))
    assert status(answer) == 431, answer[:200]
    assert b"content-type: application/json" in answer.lower()
    answer = await exchange(served.port, head("/health", "X-Big: " + "b" * (1 << 20)))
    assert status(answer) == 431, answer[:200]

    # A request line longer than the limit is 414 (URI Too Long).
    answer = await exchange(served.port, head("/health?pad=" + "u" * LIMIT))
    assert status(answer) == 414, answer[:200]
    assert "URL" in detail(answer)

    # A chunked body's trailer is a header too.
    trailer = (
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: telaten.test\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\nX-Trailer: " + b"t" * (1 << 20) + b"\r\n\r\n"
    )
    answer = await exchange(served.port, trailer)
    assert status(answer) == 431, answer[:200]


async def test_keep_alive_and_pipelining_still_work(served: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        # Two requests in one write, then, after a pause longer than the head timeout (an
        # idle keep-alive connection is not a slow head), a third on the same connection.
        writer.write(head("/health", close=False) * 2)
        await writer.drain()
        answers = b""
        while answers.count(b'{"status":"ok"}') < 2:
            answers += await asyncio.wait_for(reader.read(65536), BOUND)
        await asyncio.sleep(TIMEOUT + 0.5)
        writer.write(head("/health", "X-Pad: " + "k" * (LIMIT // 2)))
        await writer.drain()
        third = await asyncio.wait_for(reader.read(), BOUND)
        assert status(third) == 200, third[:200]
    finally:
        writer.close()

    # An oversized request pipelined behind one still being answered: that answer arrives
    # whole, then the connection closes (after a 431 if the first answer was done by then).
    answer = await exchange(served.port, head("/health", close=False) + head_of_size(2 * LIMIT))
    assert status(answer) == 200, answer[:200]
    rest = answer.split(b'{"status":"ok"}', 1)[1]
    assert rest == b"" or status(rest) == 431, rest[:200]


async def test_a_malformed_request_is_a_json_400(served: ServerProcess) -> None:
    answer = await exchange(served.port, b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n")
    assert status(answer) == 400, answer[:200]
    assert detail(answer) == "Invalid HTTP request received"


async def test_slow_and_idle_heads_are_closed_and_others_served(
    served: ServerProcess,
) -> None:
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", served.port)
    answers, statuses = await slow_loris(served.port, 50)
    assert statuses == [200] * 5
    assert all(closed_for_slowness(a) for a in answers), {a[:40] for a in answers}
    assert any(status(a) == 408 for a in answers)
    # A connection that never sends anything is closed too, without an answer.
    try:
        assert await asyncio.wait_for(idle_reader.read(), BOUND) == b""
    finally:
        idle_writer.close()


async def test_a_stalled_body_ends_its_request_with_408(served: ServerProcess) -> None:
    start = (
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: telaten.test\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        b'{"email": '
    )
    answer = await exchange(served.port, start)
    assert status(answer) == 408, answer[:200]
    assert answer.lower().count(b"connection: close") == 1
    health = await exchange(served.port, head("/health"))
    assert status(health) == 200


async def test_a_chat_stream_longer_than_the_timeouts_is_whole_and_keeps_alive(
    served: ServerProcess, fake_llm: FakeLLMServer
) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=BOUND) as client:
        owner = await new_account(client)
    text = "Catat setiap penjualan hari ini, lalu bandingkan dengan minggu lalu. " * 3
    fake_llm.script(Reply.of_text(text, chunk_size=6, chunk_delay=0.1))  # ~3.5 s of deltas
    body = json.dumps({"content": "Bagaimana omzet saya?"}).encode()
    request = (
        f"POST {API}/chat/stream HTTP/1.1\r\nHost: telaten.test\r\n"
        f"Authorization: Bearer {owner.access_token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(request)
        await writer.drain()
        stream = b""
        async with asyncio.timeout(BOUND):
            while not stream.endswith(b"\r\n0\r\n\r\n"):
                data = await reader.read(65536)
                assert data, stream[-300:]
                stream += data
        assert status(stream) == 200
        assert b"event: done" in stream and b"event: message" in stream
        writer.write(head("/health"))  # the same connection, after the stream
        await writer.drain()
        assert status(await asyncio.wait_for(reader.read(), BOUND)) == 200
    finally:
        writer.close()


@pytest.mark.parametrize("args", [("--workers", "2"), ("--reload",)], ids=["workers2", "reload"])
async def test_every_way_of_serving_has_the_limits(
    tmp_path: Path, fake_llm_server: FakeLLMServer, args: tuple[str, ...]
) -> None:
    async with fresh_database_url(tmp_path, "http") as url:
        env = limited_env(url, tmp_path, fake_llm_server.base_url)
        server = ServerProcess(env, tmp_path, *args)
        try:
            await asyncio.to_thread(server.wait_ready, 120)
            answer, health = await huge_header_meanwhile_health(server.port, 4 << 20)
            assert status(health) == 200
            assert status(answer) == 431, answer[:200]
            answers, statuses = await slow_loris(server.port, 20)
            assert statuses == [200] * 5
            assert all(closed_for_slowness(a) for a in answers), {a[:40] for a in answers}
        finally:
            server.stop()
