"""A small closed-loop HTTP load driver and server launcher shared by the benchmarks.

Everything runs on 127.0.0.1. Each benchmark starts its servers as subprocesses,
drives them for a fixed time with N concurrent clients, and reports ratios against a
baseline measured in the same run, because absolute numbers on a shared machine drift.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A uvicorn server in a subprocess, stopped on exit. Its output goes to
    `server-<port>.log` in `log_dir` (default: `cwd`)."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        port: int,
        *,
        log_dir: Path | None = None,
    ) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = ((log_dir or cwd) / f"server-{port}.log").open("w")
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


def hello_and_app(env: dict[str, str], work: Path, *, workers: int = 1) -> tuple[Server, Server]:
    """The bare hello app (the ceiling) and Telaten, started the same way, each with
    `workers` uvicorn workers (not yet ready: call `.wait()` on each inside the caller's
    try/finally). Both logs go to `work`."""
    hello_port, app_port = free_port(), free_port()
    hello = Server(
        uvicorn_args("hello_app:app", hello_port, workers=workers),
        {"PYTHONPATH": str(REPO / "bench")},
        REPO / "bench",
        hello_port,
        log_dir=work,
    )
    app = Server(
        uvicorn_args("app.main:create_app", app_port, factory=True, workers=workers),
        env,
        work,
        app_port,
    )
    return hello, app


def worker_pids(master: int) -> list[int]:
    """The uvicorn worker processes of a `--workers N` master: its children started by
    multiprocessing's spawn (not its resource tracker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == master and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def memory_kib(pid: int, key: str = "VmHWM") -> int:
    """A size from /proc/<pid>/status in KiB: VmHWM is the peak resident set so far,
    VmRSS the current one."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time a process has used so far (0 if it is gone); with
    `children`, plus that of its children which have exited and been waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all cores of the machine spent busy (not idle, not waiting for I/O)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)  # the first few, for the report

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
    client_per_worker: bool = False,
) -> Result:
    """`concurrency` clients send `request` back to back for `seconds`.

    By default they share one `httpx.AsyncClient` (a pool of `concurrency`
    connections). With `client_per_worker` each has a client and connection of its own,
    like separate users' devices: use it above ~16 clients, where the shared pool's own
    bookkeeping makes httpx the bottleneck (165 req/s to the hello app with 48 clients on
    one pool, 1,300 with one client each, on the 2-core VM of README.md)."""
    result = Result(name)
    deadline = 0.0

    async def worker(client: httpx.AsyncClient) -> None:
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

    clients = [
        _client(base_url, 1 if client_per_worker else concurrency, 30)
        for _ in range(concurrency if client_per_worker else 1)
    ]
    async with AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        began = time.perf_counter()
        deadline = began + seconds
        await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(concurrency)))
        result.seconds = time.perf_counter() - began
    return result


def _client(base_url: str, connections: int, timeout: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout)


Operation = Callable[[httpx.AsyncClient], Awaitable[object]]
"""One request (or a streamed exchange): returns when it succeeded, raises otherwise."""


async def drive_mix(
    base_url: str,
    users: Sequence[Callable[[], tuple[str, Operation]]],
    *,
    seconds: float,
    timeout: float = 60,
) -> dict[str, Result]:
    """One closed-loop client per entry of `users`, for `seconds`, each with an
    `httpx.AsyncClient` and connection of its own (as `drive(client_per_worker=True)`):
    it asks its user for the next (operation name, operation), runs it and times it,
    back to back. Any exception (HTTP status, transport, a broken stream) counts as an
    error of that operation. Results by operation name, all over the same elapsed time."""
    results: dict[str, Result] = {}
    deadline = 0.0

    async def run(choose: Callable[[], tuple[str, Operation]], client: httpx.AsyncClient) -> None:
        while (start := time.perf_counter()) < deadline:
            name, operation = choose()
            result = results.setdefault(name, Result(name))
            try:
                await operation(client)
            except Exception as exc:  # every failure is counted
                result.errors += 1
                if len(result.failures) < 5:
                    result.failures.append(f"{type(exc).__name__}: {exc}"[:300])
            else:
                result.latencies_ms.append((time.perf_counter() - start) * 1000)

    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(_client(base_url, 1, timeout)) for _ in users]
        began = time.perf_counter()
        deadline = began + seconds
        await asyncio.gather(*(run(choose, c) for choose, c in zip(users, clients, strict=True)))
        elapsed = time.perf_counter() - began
    for result in results.values():
        result.seconds = elapsed
    return results


async def insert_transactions(
    conn: Any,
    business_id: str,
    categories: Sequence[dict[str, str]],
    rows: int,
    *,
    notes: Sequence[str] = ("",),
) -> None:
    """`rows` random transactions of 2026 for one business, straight into the database on
    `conn` (an AsyncConnection) 5,000 at a time: seeding through the API would take the
    benchmark's whole budget. The same rows every run (a fixed seed)."""
    from sqlalchemy import insert

    from app.modules.finance.models import Transaction

    rng = random.Random(1)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for offset in range(0, rows, 5000):
        batch = []
        for _ in range(min(5000, rows - offset)):
            cat = rng.choice(categories)
            batch.append(
                {
                    "id": uuid.uuid4(),
                    "business_id": uuid.UUID(business_id),
                    "type": cat["type"],
                    "amount": rng.randrange(1000, 5_000_000, 500),
                    "category_id": uuid.UUID(cat["id"]),
                    "note": rng.choice(notes),
                    "occurred_at": start + timedelta(seconds=rng.randint(0, 364 * 86400)),
                    "created_at": start,
                }
            )
        await conn.execute(insert(Transaction), batch)
