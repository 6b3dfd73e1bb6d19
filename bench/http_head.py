"""Huge and slow request heads against a real `telaten serve` (SQLite, one worker).

1. Huge header: one connection sends `GET /health` with one header of `--size-mb` MB, as
   fast as the server reads it, while another client asks `/health` every 100 ms on a
   fresh connection. Prints how long the big connection held the worker (first byte sent
   to the server's answer or close), what it was answered, and /health's latency before
   (idle) and during.
2. Slow loris: `--slow` connections each send a request line and then trickle one header
   byte a second. After `--slow-seconds` prints how many the server still holds open, and
   /health's latency meanwhile.

No setting is changed from its default (HTTP_MAX_HEAD_BYTES, HTTP_HEAD_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _driver import REPO, Server, free_port

CHUNK = b"a" * 65536


async def get_health(port: int) -> float:
    """One `GET /health` on a new connection; its latency in ms (inf on failure)."""
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 60)
        writer.write(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 60)
        writer.close()
    except (OSError, TimeoutError):
        return float("inf")
    if not answer.startswith(b"HTTP/1.1 200"):
        return float("inf")
    return (time.perf_counter() - started) * 1000


async def poll_health(port: int, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        out.append(await get_health(port))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


def summary(latencies: list[float]) -> str:
    if not latencies:
        return "no requests"
    finite = [x for x in latencies if x != float("inf")]
    failed = len(latencies) - len(finite)
    if not finite:
        return f"{failed} failed"
    return (
        f"n {len(latencies)}  p50 {statistics.median(finite):8.1f} ms  "
        f"max {max(finite):8.1f} ms  failed {failed}"
    )


async def huge_header(port: int, size_mb: int) -> None:
    idle: list[float] = [await get_health(port) for _ in range(10)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stop = asyncio.Event()
    during: list[float] = []
    poller = asyncio.create_task(poll_health(port, stop, during))
    answered_at: float | None = None

    async def read_answer() -> bytes:
        nonlocal answered_at
        first = await reader.read(65536)
        answered_at = time.perf_counter()
        rest = await reader.read()  # to EOF (or what arrives before the server closes)
        return first + rest

    answer_task = asyncio.create_task(read_answer())
    started = time.perf_counter()
    sent = 0
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Huge: ")
        while sent < size_mb * 1024 * 1024:  # all of it, or until the server closes
            writer.write(CHUNK)
            await writer.drain()
            sent += len(CHUNK)
        writer.write(b"\r\nConnection: close\r\n\r\n")
        await writer.drain()
    except OSError as exc:
        print(f"  (sending stopped after {sent / 1e6:.1f} MB: {type(exc).__name__})")
    try:
        answer = await asyncio.wait_for(answer_task, 600)
    except (OSError, TimeoutError) as exc:
        answer = f"<{type(exc).__name__}>".encode()
    held = ((answered_at or time.perf_counter()) - started) * 1000
    stop.set()
    await poller
    writer.close()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "<closed, no answer>"
    print(f"huge header ({size_mb} MB): sent {sent / 1e6:.1f} MB, answered '{status}'")
    print(f"  connection held the worker      {held:10.1f} ms")
    print(f"  /health idle                    {summary(idle)}")
    print(f"  /health during                  {summary(during)}")


async def slow_loris(port: int, count: int, seconds: float) -> None:
    conns = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: bench\r\n")
        conns.append((reader, writer))
    closed_after: list[float] = []
    answers: dict[str, int] = {}
    started = time.perf_counter()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        read = asyncio.create_task(reader.read(1024))
        try:
            while time.perf_counter() - started < seconds:
                done, _ = await asyncio.wait({read}, timeout=1)
                if done:
                    data = read.result()
                    status = data.split(b"\r\n", 1)[0].decode(errors="replace") or "EOF"
                    answers[status] = answers.get(status, 0) + 1
                    closed_after.append(time.perf_counter() - started)
                    return
                writer.write(b"X")
                await writer.drain()
        except OSError:
            answers["reset"] = answers.get("reset", 0) + 1
            closed_after.append(time.perf_counter() - started)
        finally:
            read.cancel()
            writer.close()

    stop = asyncio.Event()
    during: list[float] = []
    poller = asyncio.create_task(poll_health(port, stop, during))
    await asyncio.gather(*(trickle(r, w) for r, w in conns))
    stop.set()
    await poller
    held = count - len(closed_after)
    print(f"slow loris ({count} connections, 1 byte/s, {seconds:.0f} s):")
    print(f"  still held open at the end      {held} of {count}")
    if closed_after:
        print(
            f"  closed by the server after      {min(closed_after):.1f}-{max(closed_after):.1f} s"
            f"  {answers}"
        )
    print(f"  /health during                  {summary(during)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--slow-seconds", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="telaten-bench-") as tmp:
        work = Path(tmp)
        port = free_port()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("HTTP_", "DATABASE_", "DATA_DIR"))
        }
        env.update(DATA_DIR=str(work / "data"), LOG_LEVEL="WARNING", MCP_CONFIG_PATH="none")
        server = Server(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env,
            REPO,
            port,
            log_dir=work,
        )
        try:
            await asyncio.to_thread(server.wait)
            await huge_header(port, args.size_mb)
            await slow_loris(port, args.slow, args.slow_seconds)
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
