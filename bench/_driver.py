"""A small closed-loop HTTP load driver and server launcher shared by the benchmarks.

Everything runs on 127.0.0.1. Each benchmark starts its servers as subprocesses,
drives them for a fixed time with N concurrent clients, and reports ratios against a
baseline measured in the same run, because absolute numbers on a shared machine drift.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A uvicorn server in a subprocess, stopped on exit."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = (cwd / f"server-{port}.log").open("w")
        self.proc = subprocess.Popen(
            args,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, path: str = "/health", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: see {self.log.name}")
            try:
                if httpx.get(self.base_url + path, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"server did not start: see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def uvicorn_args(target: str, port: int, *, factory: bool = False, workers: int = 1) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return [*args, "--factory"] if factory else args


def hello_and_app(env: dict[str, str], work: Path) -> tuple[Server, Server]:
    """The bare hello app (the ceiling) and Telaten, started the same way (not yet
    ready: call `.wait()` on each inside the caller's try/finally)."""
    hello_port, app_port = free_port(), free_port()
    hello = Server(
        uvicorn_args("hello_app:app", hello_port),
        {"PYTHONPATH": str(REPO / "bench")},
        REPO / "bench",
        hello_port,
    )
    app = Server(uvicorn_args("app.main:create_app", app_port, factory=True), env, work, app_port)
    return hello, app


@dataclass
class Result:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=1000, method="inclusive")[int(p * 10) - 1]

    def line(self, baseline: Result | None = None) -> str:
        text = (
            f"{self.name:<34} {self.rps:9.1f} req/s  p50 {self.pct(50):7.2f} ms  "
            f"p95 {self.pct(95):7.2f} ms  p99 {self.pct(99):7.2f} ms  errors {self.errors}"
        )
        if baseline is not None and baseline.rps:
            text += f"  ratio {self.rps / baseline.rps:5.3f}"
        return text


Request = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def drive(
    name: str,
    base_url: str,
    request: Request,
    *,
    concurrency: int,
    seconds: float,
    ok: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200,
) -> Result:
    """`concurrency` clients send `request` back to back for `seconds`."""
    result = Result(name)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while (start := time.perf_counter()) < deadline:
                try:
                    response = await request(client)
                    good = ok(response)
                except httpx.HTTPError:
                    good = False
                if good:
                    result.latencies_ms.append((time.perf_counter() - start) * 1000)
                else:
                    result.errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - began
    return result
