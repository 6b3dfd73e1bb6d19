"""Export benchmark: /health while 100,000-row CSV exports run, and the memory they take.

    .venv/bin/python bench/export.py                   # SQLite in a temp dir
    .venv/bin/python bench/export.py --database-url postgresql+asyncpg://postgres@127.0.0.1/postgres

Everything listens on 127.0.0.1. Starts a real `telaten serve` (one worker by default,
default settings but bcrypt at 4 rounds) on a fresh database: SQLite in a temp dir, or a
database --database-name created on the PostgreSQL server of --database-url and dropped
afterwards. Setup: --parallel owners (one export each, so a per-user cap on parallel
exports does not refuse them), each with a business and --rows transactions over one
year, bulk-inserted, with short notes (some with commas, dashes and non-ASCII text, as
owners write them); one more owner is the bystander whose `GET /auth/me` is sampled.

1. idle: `/health` (and the bystander's `/auth/me`) sampled one after another, with a
   short pause between samples, for --idle-seconds.
2. during: the same samplers while the --parallel owners each download their year's CSV
   (read to the end, checked: 200, the BOM, the header and every row), back to back
   until --seconds have passed (at least once each); sampling stops when the last
   export ends.
Printed: median, p95, p99 and max of each sampler idle and during, and the ratio
during/idle (target: /health's median and p95 within 2x); each export's time to first
byte and total time; and the server's peak RSS (VmHWM) before and after the exports,
with the growth per parallel export.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _driver import REPO, Server, free_port, insert_transactions, memory_kib
from load import create_database, drop_database, machine

sys.path.insert(0, str(REPO))

API = "/api/v1"
OTHER = "GET /auth/me (other user)"
PASSWORD = "Bench-Password-123"
NOTES = [
    "",
    "",
    "Jual kopi susu gula aren",
    "Beli gula, 2 kg",
    "Bayar listrik - November",
    "Ongkos kirim ke Bandung",
    "Kue lapis legit \U0001f370 pesanan Bu Sri",
    'Diskon "langganan" 10%',
]


@dataclass
class Owner:
    index: int
    email: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    business_id: str = ""
    categories: list[dict[str, str]] = field(default_factory=list)


async def set_up_owner(client: httpx.AsyncClient, index: int) -> Owner:
    owner = Owner(index, f"export-{index}-{uuid.uuid4().hex[:6]}@example.com")
    r = await client.post(
        f"{API}/auth/register",
        json={"email": owner.email, "name": f"Pemilik {index}", "password": PASSWORD},
    )
    r.raise_for_status()
    r = await client.post(f"{API}/auth/login", json={"email": owner.email, "password": PASSWORD})
    owner.headers = {"Authorization": f"Bearer {r.raise_for_status().json()['access_token']}"}
    r = await client.post(
        f"{API}/business",
        headers=owner.headers,
        json={"name": f"Toko {index}", "category": "Retail"},
    )
    owner.business_id = r.raise_for_status().json()["id"]
    r = await client.get(f"{API}/finance/categories", headers=owner.headers)
    owner.categories = r.raise_for_status().json()
    return owner


async def seed(database_url: str, owners: list[Owner], rows: int) -> float:
    """`rows` transactions in 2026 for each owner's business, in bulk; seconds taken. The
    first owner's are made here; the others get copies of them (new ids), by one
    INSERT ... SELECT each."""
    from sqlalchemy import Uuid, bindparam, text

    from app.core.config import Settings
    from app.db.session import Database

    db = Database(Settings(_env_file=None, DATABASE_URL=database_url))
    postgres = db.engine.dialect.name == "postgresql"
    new_id = "gen_random_uuid()" if postgres else "lower(hex(randomblob(16)))"
    columns = (
        "business_id, type, amount, category_id, note, payment_method, occurred_at, created_at"
    )
    copy = text(
        f"INSERT INTO transactions (id, {columns}) SELECT {new_id}, "
        f"{columns.replace('business_id', ':target')} FROM transactions WHERE business_id = :source"
    ).bindparams(bindparam("target", type_=Uuid()), bindparam("source", type_=Uuid()))
    began = time.perf_counter()
    try:
        async with db.engine.begin() as conn:
            # The defaults: every business sees the same categories.
            await insert_transactions(
                conn, owners[0].business_id, owners[0].categories, rows, notes=NOTES
            )
            for owner in owners[1:]:
                await conn.execute(
                    copy,
                    {
                        "target": uuid.UUID(owner.business_id),
                        "source": uuid.UUID(owners[0].business_id),
                    },
                )
            await conn.exec_driver_sql("ANALYZE transactions" if postgres else "ANALYZE")
    finally:
        await db.dispose()
    return time.perf_counter() - began


@dataclass
class Samples:
    name: str
    ms: list[float] = field(default_factory=list)
    errors: int = 0

    def q(self, p: float) -> float:
        if len(self.ms) < 2:
            return self.ms[0] if self.ms else float("nan")
        return statistics.quantiles(self.ms, n=100, method="inclusive")[int(p) - 1]

    def line(self, idle: Samples | None = None) -> str:
        text = (
            f"{self.name:<28} n {len(self.ms):5d}  p50 {statistics.median(self.ms):8.2f} ms  "
            f"p95 {self.q(95):8.2f} ms  p99 {self.q(99):8.2f} ms  max {max(self.ms):8.2f} ms  "
            f"errors {self.errors}"
        )
        if idle is not None:
            p50 = statistics.median(self.ms) / statistics.median(idle.ms)
            text += (
                f"\n{'':<28} ratio during/idle: p50 {p50:5.2f}"
                f"  p95 {self.q(95) / idle.q(95):5.2f}  p99 {self.q(99) / idle.q(99):5.2f}"
            )
        return text


async def sample(
    base_url: str, path: str, headers: dict[str, str], name: str, stop: asyncio.Event
) -> Samples:
    """GET `path` every 50 ms until `stop` is set, each request on its own (open loop: a
    stalled server makes every request sent meanwhile wait, and each of them counts, so a
    stall is not hidden behind one slow sample)."""
    out = Samples(name)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=50)

    async def one(c: httpx.AsyncClient) -> None:
        began = time.perf_counter()
        try:
            r = await c.get(path, headers=headers)
            if r.status_code == 200:
                out.ms.append((time.perf_counter() - began) * 1000)
            else:
                out.errors += 1
        except httpx.HTTPError:
            out.errors += 1

    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as c:
        await c.get(path, headers=headers)  # connect outside the measurement
        pending = set()
        while not stop.is_set():
            task = asyncio.create_task(one(c))
            pending.add(task)
            task.add_done_callback(pending.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
        await asyncio.gather(*pending)
    return out


def reset_peak(pid: int) -> bool:
    """Set the process's peak RSS (VmHWM) back to its current RSS (Linux, as root or
    the owner): `5` to /proc/<pid>/clear_refs."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Export:
    first_byte_s: float
    total_s: float
    megabytes: float


async def export_once(client: httpx.AsyncClient, headers: dict[str, str], rows: int) -> Export:
    began = time.perf_counter()
    first = None
    size = lines = 0
    head = b""
    async with client.stream(
        "GET",
        f"{API}/finance/transactions/export",
        headers=headers,
        params={"start": "2026-01-01", "end": "2026-12-31"},
    ) as r:
        if r.status_code != 200:
            await r.aread()
            raise RuntimeError(f"export answered {r.status_code}: {r.text[:200]}")
        async for chunk in r.aiter_raw():
            if first is None:
                first = time.perf_counter() - began
            if len(head) < 64:
                head += chunk[:64]
            size += len(chunk)
            lines += chunk.count(b"\n")
    total = time.perf_counter() - began
    if not head.startswith(b"\xef\xbb\xbfoccurred_at,type,amount,category,note,id\r\n"):
        raise RuntimeError(f"unexpected start of the CSV: {head!r}")
    if lines != rows + 1:
        raise RuntimeError(f"{lines - 1} rows exported, {rows} expected")
    return Export(first or total, total, size / 1e6)


def run_exporters(
    base_url: str, owners_headers: list[dict[str, str]], rows: int, seconds: float
) -> tuple[list[Export], list[str]]:
    """In a process of its own (so that reading the streams does not delay the
    samplers' clock): one client per owner, exporting back to back until `seconds` have
    passed, at least once each."""

    async def run() -> tuple[list[Export], list[str]]:
        exports: list[Export] = []
        errors: list[str] = []
        deadline = time.monotonic() + seconds

        async def exporter(headers: dict[str, str]) -> None:
            async with httpx.AsyncClient(base_url=base_url, timeout=600) as c:
                while True:
                    try:
                        exports.append(await export_once(c, headers, rows))
                    except Exception as exc:  # counted and shown
                        errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    if time.monotonic() >= deadline:
                        return

        await asyncio.gather(*(exporter(h) for h in owners_headers))
        return exports, errors

    return asyncio.run(run())


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", ""),
        help="a PostgreSQL server (used to create --database-name); default: SQLite",
    )
    parser.add_argument("--database-name", default="telaten_bench_export")
    parser.add_argument("--rows", type=int, default=100_000, help="transactions per owner")
    parser.add_argument("--parallel", type=int, default=4, help="exports at once")
    parser.add_argument("--seconds", type=float, default=15, help="keep exporting this long")
    parser.add_argument("--idle-seconds", type=float, default=6)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--app-env", action="append", default=[], metavar="KEY=VALUE", help="extra setting"
    )
    args = parser.parse_args()

    print(machine())
    work = Path(tempfile.mkdtemp(prefix="telaten-bench-export-"))
    postgres = args.database_url.startswith("postgresql")
    if postgres:
        database_url = await create_database(args.database_url, args.database_name)
    else:
        database_url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
        print("database: SQLite (WAL) in", work)
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(work / "data"),
        "MCP_CONFIG_PATH": str(work / "no-mcp.json"),
        "LOG_LEVEL": "WARNING",
        "BCRYPT_ROUNDS": "4",
        **dict(kv.split("=", 1) for kv in args.app_env),
    }
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = Server([*command, "--workers", str(args.workers)], env, work, port)
    failed = False
    try:
        server.wait("/health")
        print(
            f"telaten serve, {args.workers} worker(s), pid {server.proc.pid}; "
            f"{args.parallel} exports of {args.rows} rows at once"
        )
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as c:
            owners = [await set_up_owner(c, i) for i in range(args.parallel)]
            bystander = await set_up_owner(c, args.parallel)
        seconds = await seed(database_url, owners, args.rows)
        print(
            f"seeded {args.rows} transactions for each of {len(owners)} owners in {seconds:.1f} s"
        )
        pid = server.proc.pid  # one worker: uvicorn serves in the process it was started in

        exact_peak = reset_peak(pid)
        rss_start = memory_kib(pid, "VmRSS")
        async with httpx.AsyncClient(base_url=server.base_url, timeout=300) as c:
            warm = await export_once(c, owners[0].headers, args.rows)
        alone_growth = (memory_kib(pid) - rss_start) / 1024
        print(
            f"one export alone: first byte {warm.first_byte_s:.2f} s, all {warm.total_s:.2f} s, "
            f"{warm.megabytes:.1f} MB; peak RSS {alone_growth:+.0f} MiB over "
            f"{rss_start / 1024:.0f} MiB"
        )

        stop = asyncio.Event()
        samplers = asyncio.gather(
            sample(server.base_url, "/health", {}, "GET /health", stop),
            sample(server.base_url, f"{API}/auth/me", bystander.headers, OTHER, stop),
        )
        await asyncio.sleep(args.idle_seconds)
        stop.set()
        idle_health, idle_me = await samplers

        reset_peak(pid)
        rss_before = memory_kib(pid, "VmRSS")
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            await loop.run_in_executor(pool, int)  # the process started, its imports done
            stop = asyncio.Event()
            samplers = asyncio.gather(
                sample(server.base_url, "/health", {}, "GET /health", stop),
                sample(server.base_url, f"{API}/auth/me", bystander.headers, OTHER, stop),
            )
            began = time.perf_counter()
            exports, errors = await loop.run_in_executor(
                pool,
                run_exporters,
                server.base_url,
                [o.headers for o in owners],
                args.rows,
                args.seconds,
            )
        elapsed = time.perf_counter() - began
        stop.set()
        busy_health, busy_me = await samplers
        peak = memory_kib(pid)

        print()
        print(f"idle, {args.idle_seconds:.0f} s (a request every 50 ms from each sampler):")
        print(idle_health.line())
        print(idle_me.line())
        print(f"during {args.parallel} parallel exports, {elapsed:.1f} s:")
        print(busy_health.line(idle_health))
        print(busy_me.line(idle_me))
        print()
        if exports:
            firsts = [e.first_byte_s for e in exports]
            totals = [e.total_s for e in exports]
            print(
                f"exports: {len(exports)} done, errors {len(errors)}; first byte median "
                f"{statistics.median(firsts):.2f} s (max {max(firsts):.2f} s); whole export "
                f"median {statistics.median(totals):.2f} s (max {max(totals):.2f} s), "
                f"{exports[0].megabytes:.1f} MB each"
            )
        for error in errors[:5]:
            print("  error:", error)
        growth = (peak - rss_before) / 1024
        print(
            f"server peak RSS during the exports: {peak / 1024:.0f} MiB, {growth:+.0f} MiB over "
            f"the {rss_before / 1024:.0f} MiB before them: {growth / args.parallel:+.1f} MiB "
            "per parallel export"
            + ("" if exact_peak else " (VmHWM could not be reset: over the earlier peak)")
        )
        p50 = statistics.median(busy_health.ms) / statistics.median(idle_health.ms)
        p95 = busy_health.q(95) / idle_health.q(95)
        verdict = "within" if max(p50, p95) <= 2 else "NOT within"
        print(f"/health during/idle: p50 {p50:.2f}, p95 {p95:.2f} ({verdict} the 2x target)")
        failed = bool(errors) or busy_health.errors > 0 or busy_me.errors > 0
    finally:
        server.stop()
        if postgres:
            await drop_database(args.database_url, args.database_name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
