"""Load benchmark: a realistic mix of owners' requests against 2 workers on PostgreSQL.

    .venv/bin/python bench/load.py [--seconds 60 | --quick] [--owners 48] [--workers 2]
                                   [--database-url postgresql+asyncpg://postgres@127.0.0.1/postgres]

Everything listens on 127.0.0.1. Starts
  1. the fake OpenAI-compatible LLM (tests/fakes/llm_server.py, answering at once);
  2. Telaten (uvicorn, --workers, default settings, bcrypt at 12 rounds) on a fresh
     PostgreSQL database (--database-name, created on the server of --database-url and
     dropped afterwards), pointed at the fake LLM;
  3. the bare FastAPI hello endpoint (bench/hello_app.py) with the same workers: the
     ceiling.
Setup: --owners accounts, each registered, logged in, with a business profile (which
makes the app generate the first roadmap in the background through the fake LLM; the
benchmark waits until every roadmap is saved) and --history past transactions
(bulk-inserted, as if imported).
Then the mix runs for --seconds: --owners simulated owners at once, each sending one
request after another (no think time) chosen at random with the weights in MIX: login,
/auth/me, record a transaction, list transactions, the month's summary, list
milestones, and a chat turn (POST /chat/stream, read to the end of the stream). hello
is driven by the same number of concurrent clients for --hello-seconds, half just
before the mix and half just after.

Printed per operation: count, req/s, its ratio to hello's req/s, p50/p95/p99 latency,
errors; the CPU used per request and by each part (Telaten's workers, PostgreSQL, the
fake LLM, this driver); the connections PostgreSQL accepted during the mix; then peak
RSS (VmHWM) of each uvicorn worker. Any non-2xx answer, transport
error or broken stream is an error; after the mix every owner's transaction count is
checked against what was acknowledged. Exits 1 if there was any error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _driver import (
    REPO,
    Operation,
    Result,
    Server,
    cpu_seconds,
    drive,
    drive_mix,
    free_port,
    hello_and_app,
    machine_busy_seconds,
    memory_kib,
    worker_pids,
)

sys.path.insert(0, str(REPO))

API = "/api/v1"
PASSWORD = "Bench-Password-123"

# Weights (out of 100) of what an owner's app does: mostly reading the dashboard, now
# and then recording a sale or an expense or asking the advisor; logging in is rare
# (an access token lasts an hour).
MIX = {
    "GET /auth/me": 20,
    "GET /finance/transactions": 20,
    "GET /finance/summary": 18,
    "GET /milestones": 15,
    "POST /finance/transactions": 15,
    "POST /chat/stream": 11,
    "POST /auth/login": 1,
}

CATEGORIES = ["Kuliner", "Retail", "Fashion", "Jasa", "Kerajinan", "Pertanian"]
QUESTIONS = [
    "Bagaimana cara menaikkan penjualan minggu ini?",
    "Pengeluaran saya bulan ini terlalu besar, apa yang bisa dihemat?",
    "Apa langkah berikutnya untuk usaha saya?",
    "Berapa harga jual yang pas untuk produk baru saya?",
    "Bagaimana cara promosi di media sosial dengan modal kecil?",
]
TURNS_PER_SESSION = 10  # then the owner starts a new conversation


class Failed(Exception):
    pass


def expect(response: httpx.Response, status: int) -> httpx.Response:
    if response.status_code != status:
        raise Failed(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: {response.text[:200]}"
        )
    return response


@dataclass
class Owner:
    index: int
    email: str
    rng: random.Random
    headers: dict[str, str] = field(default_factory=dict)
    business_id: str = ""
    categories: dict[str, list[str]] = field(default_factory=dict)  # type -> ids
    session_id: str | None = None
    turns: int = 0
    recorded: int = 0  # transactions acknowledged with 201 (mix and alone phases)

    # --- the mix ------------------------------------------------------------------------

    def next(self) -> tuple[str, Operation]:
        name = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        return name, getattr(self, OPERATIONS[name])

    async def login(self, client: httpx.AsyncClient) -> None:
        r = await client.post(f"{API}/auth/login", json={"email": self.email, "password": PASSWORD})
        self.headers = {"Authorization": f"Bearer {expect(r, 200).json()['access_token']}"}

    async def me(self, client: httpx.AsyncClient) -> None:
        expect(await client.get(f"{API}/auth/me", headers=self.headers), 200)

    async def record(self, client: httpx.AsyncClient) -> None:
        kind = "income" if self.rng.random() < 0.6 else "expense"
        body = {
            "type": kind,
            "amount": self.rng.randrange(5_000, 500_000, 500),
            "category_id": self.rng.choice(self.categories[kind]),
            "note": "dari bench",
        }
        r = await client.post(f"{API}/finance/transactions", json=body, headers=self.headers)
        expect(r, 201)
        self.recorded += 1

    async def transactions(self, client: httpx.AsyncClient) -> None:
        expect(await client.get(f"{API}/finance/transactions", headers=self.headers), 200)

    async def summary(self, client: httpx.AsyncClient) -> None:
        r = await client.get(f"{API}/finance/summary?period=month", headers=self.headers)
        expect(r, 200)

    async def milestones(self, client: httpx.AsyncClient) -> None:
        expect(await client.get(f"{API}/milestones", headers=self.headers), 200)

    async def chat(self, client: httpx.AsyncClient) -> None:
        if self.turns >= TURNS_PER_SESSION:
            self.session_id, self.turns = None, 0
        body = {"session_id": self.session_id, "content": self.rng.choice(QUESTIONS)}
        async with client.stream(
            "POST", f"{API}/chat/stream", json=body, headers=self.headers
        ) as r:
            if r.status_code != 200:
                await r.aread()
                expect(r, 200)
            event, done = "", False
            async for line in r.aiter_lines():  # the whole stream, to its end
                if line.startswith("event: "):
                    event = line[7:].strip()
                elif line.startswith("data: "):
                    if event == "session":
                        self.session_id = json.loads(line[6:])["session_id"]
                    elif event == "error":
                        raise Failed(f"chat error event: {line[6:200]}")
                    elif event == "done":
                        done = True
        if not done:
            raise Failed("chat stream ended without `done`")
        self.turns += 1


OPERATIONS = {  # name -> Owner's method
    "POST /auth/login": "login",
    "GET /auth/me": "me",
    "POST /finance/transactions": "record",
    "GET /finance/transactions": "transactions",
    "GET /finance/summary": "summary",
    "GET /milestones": "milestones",
    "POST /chat/stream": "chat",
}
assert OPERATIONS.keys() == MIX.keys()


# --- setup ------------------------------------------------------------------------------


async def create_database(server_url: str, name: str) -> str:
    """A fresh, empty database `name` on the server of `server_url`; its URL."""
    url = make_url(server_url)
    admin = await asyncpg.connect(_libpq(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        version = await admin.fetchval("SHOW server_version")
    finally:
        await admin.close()
    print(f"database: PostgreSQL {version}, fresh database {name!r}")
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(_libpq(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def sessions_opened(server_url: str, name: str) -> int:
    """Connections PostgreSQL has accepted to database `name` so far."""
    admin = await asyncpg.connect(_libpq(server_url))
    try:
        await admin.execute("SELECT pg_stat_clear_snapshot()")
        return await admin.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", name
        )
    finally:
        await admin.close()


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def set_up_owner(client: httpx.AsyncClient, owner: Owner) -> None:
    r = await client.post(
        f"{API}/auth/register",
        json={"email": owner.email, "name": f"Pemilik {owner.index}", "password": PASSWORD},
    )
    expect(r, 201)
    await owner.login(client)
    business = {
        "name": f"Usaha Bench {owner.index}",
        "category": CATEGORIES[owner.index % len(CATEGORIES)],
        "description": "Usaha kecil yang dipakai untuk uji beban.",
        "stage": "growth",
        "primary_goal": "Menambah pelanggan tetap",
    }
    r = await client.post(f"{API}/business", json=business, headers=owner.headers)
    owner.business_id = expect(r, 201).json()["id"]
    r = await client.get(f"{API}/finance/categories", headers=owner.headers)
    for category in expect(r, 200).json():
        owner.categories.setdefault(category["type"], []).append(category["id"])


async def seed_history(database_url: str, owners: list[Owner], per_owner: int) -> None:
    """`per_owner` transactions for each business over the last 120 days, in bulk."""
    from sqlalchemy import insert

    from app.core.config import Settings
    from app.db.session import Database
    from app.modules.finance.models import Transaction

    db = Database(Settings(_env_file=None, DATABASE_URL=database_url))
    now = datetime.now(UTC)
    try:
        async with db.engine.begin() as conn:
            for owner in owners:
                rows = []
                for _ in range(per_owner):
                    kind = "income" if owner.rng.random() < 0.6 else "expense"
                    occurred = now - timedelta(seconds=owner.rng.randint(3600, 120 * 86400))
                    rows.append(
                        {
                            "id": uuid.uuid4(),
                            "business_id": uuid.UUID(owner.business_id),
                            "type": kind,
                            "amount": owner.rng.randrange(5_000, 2_000_000, 500),
                            "category_id": uuid.UUID(owner.rng.choice(owner.categories[kind])),
                            "note": "",
                            "occurred_at": occurred,
                            "created_at": occurred,
                        }
                    )
                if rows:
                    await conn.execute(insert(Transaction), rows)
            await conn.exec_driver_sql("ANALYZE")
    finally:
        await db.dispose()


async def wait_for_roadmaps(client: httpx.AsyncClient, owners: list[Owner], timeout: float) -> None:
    """Until every owner's first roadmap (generated in the background) is saved."""
    deadline = time.monotonic() + timeout
    waiting = list(owners)
    while waiting:
        still = []
        for owner in waiting:
            r = await client.get(f"{API}/milestones/generation", headers=owner.headers)
            status = expect(r, 200).json()["status"]
            if status in ("pending", "running"):
                still.append(owner)
            elif status != "succeeded":
                raise Failed(f"roadmap of owner {owner.index} ended {status}: {r.text[:200]}")
        waiting = still
        if waiting and time.monotonic() > deadline:
            raise Failed(f"{len(waiting)} roadmaps not generated within {timeout:g} s")
        if waiting:
            await asyncio.sleep(0.5)


async def check_counts(client: httpx.AsyncClient, owners: list[Owner], history: int) -> int:
    """Owners whose stored transaction count is not history + what was acknowledged."""
    wrong = 0
    for owner in owners:
        r = await client.get(f"{API}/finance/transactions?limit=1", headers=owner.headers)
        total = expect(r, 200).json()["total"]
        if total != history + owner.recorded:
            print(f"  owner {owner.index}: {total} stored, {history + owner.recorded} expected")
            wrong += 1
    return wrong


# --- report -----------------------------------------------------------------------------


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    ram_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), {ram_kib / 1024**2:.1f} GiB RAM, "
        f"{platform.machine()}, Python {platform.python_version()}"
    )


HEADER = (
    f"{'operation':<28} {'count':>7} {'req/s':>8} {'ratio':>7} "
    f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}"
)


def row(result: Result, hello: Result | None) -> str:
    ratio = f"{result.rps / hello.rps:7.3f}" if hello and hello.rps else f"{'':>7}"
    return (
        f"{result.name:<28} {result.count:7d} {result.rps:8.1f} {ratio} "
        f"{result.pct(50):8.1f} {result.pct(95):8.1f} {result.pct(99):8.1f} {result.errors:6d}"
    )


def postgres_cpu_seconds() -> float:
    """CPU time of the local PostgreSQL server's processes, with that of backends that
    have exited (the postmaster waits for them, so it is in its children's time)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or (entry / "comm").read_text().strip() != "postgres":
                continue
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            parent = (Path("/proc") / str(ppid) / "comm").read_text().strip()
        except OSError:
            continue
        # the postmaster (whose parent is not postgres) with its reaped children
        total += cpu_seconds(int(entry.name), children=parent != "postgres")
    return total


def cpu_snapshot(app_workers: list[int], fake: int) -> dict[str, float]:
    """CPU seconds used so far, by part (PostgreSQL: all of it, so also the work it does
    for anyone else on the machine)."""
    return {
        "Telaten workers": sum(cpu_seconds(pid) for pid in app_workers),
        "PostgreSQL": postgres_cpu_seconds(),
        "fake LLM": cpu_seconds(fake),
        "this driver": cpu_seconds(os.getpid()),
        "machine": machine_busy_seconds(),
    }


def cpu_line(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    used = {key: after[key] - before[key] for key in after}
    machine = used.pop("machine")
    parts = [f"{key} {value:.1f}" for key, value in used.items()]
    rest = max(0.0, machine - sum(used.values()))
    parts.append(f"everything else (kernel, other processes) {rest:.1f}")
    cores = os.cpu_count() or 1
    return (
        f"CPU during the mix, core-seconds (of {cores} x {seconds:.1f} = {cores * seconds:.0f};"
        f" busy {machine:.1f}): " + ", ".join(parts)
    )


def rss_line(label: str, pids: list[int], at_start: dict[int, int]) -> str:
    sizes = []
    for pid in pids:
        try:
            text = f"pid {pid} {memory_kib(pid) / 1024:.0f} MiB"
        except OSError:
            text = f"pid {pid} gone"
        if pid in at_start:
            text += f" ({at_start[pid] / 1024:.0f} MiB when ready)"
        sizes.append(text)
    return f"peak RSS (VmHWM) per worker, {label}: " + ", ".join(sizes)


# --- main -------------------------------------------------------------------------------


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, help="length of the mix (default 60, quick 15)")
    parser.add_argument("--hello-seconds", type=float, help="length of hello (default 20, quick 6)")
    parser.add_argument("--quick", action="store_true", help="a short run (~15 s of mix)")
    parser.add_argument(
        "--alone-seconds",
        type=float,
        help="then each operation alone for this long (default 8, quick 0: skipped)",
    )
    parser.add_argument("--owners", type=int, default=48, help="concurrent simulated owners")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--history", type=int, default=500, help="past transactions per owner")
    parser.add_argument("--bcrypt-rounds", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server (its database is only used to create --database-name)",
    )
    parser.add_argument("--database-name", default="telaten_bench_load")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument(
        "--app-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for Telaten, e.g. DB_POOL_SIZE=30 (repeatable)",
    )
    args = parser.parse_args()
    seconds = args.seconds or (15 if args.quick else 60)
    hello_seconds = args.hello_seconds or (6 if args.quick else 20)
    alone_seconds = (0 if args.quick else 8) if args.alone_seconds is None else args.alone_seconds
    if not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a postgresql+asyncpg:// URL")

    print(machine())
    database_url = await create_database(args.database_url, args.database_name)
    work = Path(tempfile.mkdtemp(prefix="telaten-bench-load-"))
    fake_port = free_port()
    fake = Server(
        [sys.executable, "-m", "tests.fakes.llm_server", "--port", str(fake_port)],
        {},
        work,
        fake_port,
    )
    env = {
        "DATA_DIR": str(work / "data"),
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "REGISTER_MAX_PER_CLIENT": "1000000",  # every owner registers from 127.0.0.1
        "BCRYPT_ROUNDS": str(args.bcrypt_rounds),
        "LLM_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
        "LLM_MODEL_NAME": "fake-model",
        "LLM_MAX_RETRIES": "0",  # a failed LLM call must show up, not be retried away
    }
    env.update(item.split("=", 1) for item in args.app_env)
    if args.app_env:
        print(f"Telaten settings from --app-env: {' '.join(args.app_env)}")
    hello, app = hello_and_app(env, work, workers=args.workers)
    errors = 0
    try:
        fake.wait("/_calls")
        hello.wait("/hello")
        app.wait("/health")
        app_workers = worker_pids(app.proc.pid)
        hello_workers = worker_pids(hello.proc.pid)
        rss_at_start = {pid: memory_kib(pid) for pid in app_workers + hello_workers}
        print(
            f"Telaten: {len(app_workers)} uvicorn workers {app_workers}, bcrypt "
            f"{args.bcrypt_rounds} rounds; hello: {len(hello_workers)} workers; logs in {work}"
        )

        began = time.perf_counter()
        rng = random.Random(args.seed)
        owners = [
            Owner(i, f"owner-{i}-{uuid.uuid4().hex[:6]}@example.com", random.Random(rng.random()))
            for i in range(args.owners)
        ]
        async with httpx.AsyncClient(base_url=app.base_url, timeout=120) as client:
            gate = asyncio.Semaphore(8)

            async def one(owner: Owner) -> None:
                async with gate:
                    await set_up_owner(client, owner)

            await asyncio.gather(*(one(o) for o in owners))
            await seed_history(database_url, owners, args.history)
            await wait_for_roadmaps(client, owners, timeout=180)
        print(
            f"setup: {args.owners} owners registered, logged in, business created, "
            f"first roadmap generated, {args.history} past transactions each "
            f"({time.perf_counter() - began:.1f} s)"
        )
        print(
            f"{args.owners} concurrent clients; hello for {hello_seconds:g} s, "
            f"then the mix for {seconds:g} s\n"
        )

        async def hello_phase(label: str) -> tuple[Result, float, float]:
            """hello for half of --hello-seconds; with its workers' and this driver's
            CPU seconds."""
            cpu = sum(cpu_seconds(pid) for pid in hello_workers)
            driver = cpu_seconds(os.getpid())
            result = await drive(
                label,
                hello.base_url,
                lambda c: c.get("/hello"),
                concurrency=args.owners,
                seconds=hello_seconds / 2,
                client_per_worker=True,  # like the owners: one connection each
            )
            return (
                result,
                sum(cpu_seconds(pid) for pid in hello_workers) - cpu,
                cpu_seconds(os.getpid()) - driver,
            )

        hello_before, hello_cpu_before, driver_before = await hello_phase("hello before the mix")
        sessions_before = await sessions_opened(args.database_url, args.database_name)
        cpu_before = cpu_snapshot(app_workers, fake.proc.pid)
        results = await drive_mix(app.base_url, [o.next for o in owners], seconds=seconds)
        cpu_after = cpu_snapshot(app_workers, fake.proc.pid)
        sessions = await sessions_opened(args.database_url, args.database_name) - sessions_before
        hello_after, hello_cpu_after, driver_after = await hello_phase("hello after the mix")

        # Each operation alone, by every owner at once: its own rate (a ratio to hello
        # that does not depend on the mix's weights) and what one request costs.
        alone: list[tuple[Result, float, float]] = []  # result, worker / PostgreSQL CPU s
        if alone_seconds:
            for name in MIX:
                method = OPERATIONS[name]
                before = cpu_snapshot(app_workers, fake.proc.pid)
                one = await drive_mix(
                    app.base_url,
                    [lambda o=o, m=method, n=name: (n, getattr(o, m)) for o in owners],
                    seconds=alone_seconds,
                )
                used = cpu_snapshot(app_workers, fake.proc.pid)
                alone.append(
                    (
                        one.get(name, Result(name)),
                        used["Telaten workers"] - before["Telaten workers"],
                        used["PostgreSQL"] - before["PostgreSQL"],
                    )
                )
        workers_at_end = worker_pids(app.proc.pid)

        # The ceiling: hello measured half before and half after the mix, so a change in
        # what else runs on the machine shows up (the two rates differ) and evens out.
        base = Result(
            "hello (bare FastAPI)",
            hello_before.latencies_ms + hello_after.latencies_ms,
            hello_before.errors + hello_after.errors,
            hello_before.seconds + hello_after.seconds,
            hello_before.failures + hello_after.failures,
        )
        total = Result("all operations (the mix)")
        for result in results.values():
            total.latencies_ms.extend(result.latencies_ms)
            total.errors += result.errors
            total.seconds = result.seconds
        print(f"the mix: {args.owners} owners for {seconds:g} s; ratio = req/s over hello's")
        print(HEADER)
        print(row(base, None))
        for name in MIX:
            print(row(results.get(name, Result(name, seconds=total.seconds)), base))
        print(row(total, base))
        print()
        print(
            f"hello before / after the mix: {hello_before.rps:.0f} / {hello_after.rps:.0f} "
            f"req/s; during hello this driver used {driver_before + driver_after:.1f} and "
            f"hello's workers {hello_cpu_before + hello_cpu_after:.1f} core-seconds "
            f"of {(os.cpu_count() or 1) * base.seconds:.0f}"
        )
        hello_ms = (hello_cpu_before + hello_cpu_after) / max(1, base.count) * 1000
        mix_ms = (
            (cpu_after["Telaten workers"] - cpu_before["Telaten workers"])
            / max(1, total.count)
            * 1000
        )
        print(
            f"worker CPU per request: hello {hello_ms:.2f} ms, the mix {mix_ms:.2f} ms "
            f"({mix_ms / hello_ms if hello_ms else float('nan'):.1f} x hello)"
        )
        print(cpu_line(cpu_before, cpu_after, total.seconds))
        print(f"PostgreSQL connections opened by Telaten during the mix: {sessions}")

        if alone:
            print(
                f"\neach operation alone: {args.owners} owners for {alone_seconds:g} s each; "
                "ratio = req/s over hello's; CPU = per request"
            )
            print(f"{HEADER}  {'worker CPU':>10} {'PG CPU':>7}")
            for result, worker_cpu, pg_cpu in alone:
                n = max(1, result.count)
                print(
                    f"{row(result, base)}  {worker_cpu / n * 1000:7.2f} ms "
                    f"{pg_cpu / n * 1000:4.2f} ms"
                )
        print()
        print(rss_line("Telaten", workers_at_end, rss_at_start))
        print(rss_line("hello", hello_workers, rss_at_start))
        if workers_at_end != app_workers:
            print(
                f"WARNING: Telaten's workers changed during the run: "
                f"{app_workers} -> {workers_at_end}"
            )
            errors += 1

        calls = httpx.get(f"http://127.0.0.1:{fake_port}/_calls", timeout=30).json()
        chats = [results.get("POST /chat/stream", Result(""))]
        chats += [r for r, _, _ in alone if r.name == "POST /chat/stream"]
        turns = sum(c.count + c.errors for c in chats)
        print(
            f"fake LLM: {len(calls)} chat completions for {turns} chat turns "
            f"(and {args.owners} roadmap generations in setup)"
        )
        async with httpx.AsyncClient(base_url=app.base_url, timeout=60) as client:
            wrong = await check_counts(client, owners, args.history)
        recorded = sum(o.recorded for o in owners)
        print(
            f"transactions: {recorded} acknowledged; stored counts "
            f"{'match for every owner' if not wrong else f'WRONG for {wrong} owners'}"
        )
        every = [base, *results.values(), *(r for r, _, _ in alone)]
        for result in every:
            for failure in result.failures:
                print(f"  {result.name}: {failure}")
        failed = sum(r.errors for r in every)
        errors += failed + wrong
        print(f"\nerrors: {failed}")
    finally:
        app.stop()
        hello.stop()
        fake.stop()
        if not args.keep_database:
            await drop_database(args.database_url, args.database_name)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
