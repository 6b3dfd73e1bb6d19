"""Finance benchmark: recording transactions, and the summary over 100,000 of them.

    .venv/bin/python bench/finance.py [--database-url URL] [--rows 100000] [--seconds 10]

Starts a bare FastAPI hello endpoint and Telaten (uvicorn, one worker) the same way.
1. `POST /finance/transactions` from 8 concurrent clients for --seconds (each request:
   auth, category check, business lock, insert, points award, commit): transactions/s,
   with the hello rate measured just before as the ceiling.
2. --rows transactions of one business spread over a year, inserted in bulk, then
   `GET /finance/summary` for a year, a month and a day: median and p95 latency, with
   the latency of an authenticated `GET /auth/me` (one indexed lookup) as the baseline.
On PostgreSQL it also prints the plan of the summary's heaviest query.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _driver import REPO, drive, hello_and_app, insert_transactions

sys.path.insert(0, str(REPO))

PASSWORD = "Bench-Password-123"


async def setup(base_url: str) -> tuple[dict[str, str], str, list[dict[str, str]]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as c:
        email = f"fin-{uuid.uuid4().hex[:8]}@example.com"
        await c.post(
            "/api/v1/auth/register", json={"email": email, "name": "Bench", "password": PASSWORD}
        )
        r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await c.post(
            "/api/v1/business", headers=headers, json={"name": "Bench Shop", "category": "Retail"}
        )
        business_id = r.json()["id"]
        cats = (await c.get("/api/v1/finance/categories", headers=headers)).json()
        return headers, business_id, cats


async def bulk_insert(
    database_url: str, business_id: str, cats: list[dict[str, str]], rows: int
) -> float:
    from app.core.config import Settings
    from app.db.session import Database

    db = Database(Settings(_env_file=None, DATABASE_URL=database_url))
    began = time.perf_counter()
    try:
        async with db.engine.begin() as conn:
            await insert_transactions(conn, business_id, cats, rows)
            if db.engine.dialect.name == "postgresql":
                await conn.exec_driver_sql("ANALYZE transactions")
    finally:
        await db.dispose()
    return time.perf_counter() - began


async def explain(database_url: str, business_id: str) -> str:
    from app.core.config import Settings
    from app.db.session import Database

    db = Database(Settings(_env_file=None, DATABASE_URL=database_url))
    try:
        async with db.engine.connect() as conn:
            rows = await conn.exec_driver_sql(
                "EXPLAIN SELECT date_trunc('month', timezone('Asia/Jakarta', occurred_at))::date, "
                "type, category_id, sum(amount), count(*) FROM transactions "
                "WHERE business_id = $1 AND occurred_at >= '2026-01-01' "
                "AND occurred_at < '2027-01-01' GROUP BY 1, 2, 3",
                (uuid.UUID(business_id),),
            )
            return "\n".join("    " + r[0] for r in rows)
    finally:
        await db.dispose()


async def latencies(base_url: str, path: str, headers: dict[str, str], n: int) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as c:
        for _ in range(3):
            (await c.get(path, headers=headers)).raise_for_status()
        for _ in range(n):
            t = time.perf_counter()
            (await c.get(path, headers=headers)).raise_for_status()
            out.append((time.perf_counter() - t) * 1000)
    return out


def describe(label: str, samples: list[float], baseline: list[float] | None = None) -> str:
    median = statistics.median(samples)
    p95 = statistics.quantiles(samples, n=20, method="inclusive")[18]
    text = f"{label:<40} median {median:8.2f} ms  p95 {p95:8.2f} ms"
    if baseline:
        text += f"  ratio to /auth/me {median / statistics.median(baseline):6.1f}"
    return text


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="telaten-bench-finance-"))
    database_url = args.database_url or f"sqlite+aiosqlite:///{work / 'bench.db'}"
    env = {
        "DATA_DIR": str(work / "data"),
        "LOG_LEVEL": "WARNING",
        "REGISTER_MAX_PER_CLIENT": "1000000",
        "BCRYPT_ROUNDS": "4",
        "DATABASE_URL": database_url,
        "POINTS_TRANSACTION_DAILY_CAP": "10",
    }
    hello, app = hello_and_app(env, work)
    try:
        hello.wait("/hello")
        app.wait("/health")
        machine = f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"
        dialect = "postgresql" if database_url.startswith("postgresql") else "sqlite"
        print(f"machine: {machine}, Python {platform.python_version()}; database: {dialect}")

        headers, _business_id, cats = await setup(app.base_url)
        base = await drive(
            "hello", hello.base_url, lambda c: c.get("/hello"), concurrency=8, seconds=args.seconds
        )
        sales = next(c["id"] for c in cats if c["name"] == "Penjualan")
        created = await drive(
            "POST /finance/transactions",
            app.base_url,
            lambda c: c.post(
                "/api/v1/finance/transactions",
                headers=headers,
                json={"type": "income", "amount": 15000, "category_id": sales},
            ),
            concurrency=8,
            seconds=args.seconds,
            ok=lambda r: r.status_code == 201,
        )
        print(base.line())
        print(created.line(base))

        headers2, business2, cats2 = await setup(app.base_url)
        seconds = await bulk_insert(database_url, business2, cats2, args.rows)
        print(f"bulk-inserted {args.rows} transactions for one business in {seconds:.1f} s")
        me = await latencies(app.base_url, "/api/v1/auth/me", headers2, 50)
        print(describe("GET /auth/me (baseline)", me))
        for label, query in (
            ("summary period=year (all rows)", "period=year&date=2026-06-01"),
            ("summary period=month", "period=month&date=2026-06-15"),
            ("summary period=day", "period=day&date=2026-06-15"),
            ("list newest 20", None),
        ):
            path = (
                f"/api/v1/finance/summary?{query}"
                if query
                else "/api/v1/finance/transactions?limit=20"
            )
            print(describe(label, await latencies(app.base_url, path, headers2, 20), me))
        if dialect == "postgresql":
            print("plan of the summary's one grouped query (year):")
            print(await explain(database_url, business2))
    finally:
        app.stop()
        hello.stop()


if __name__ == "__main__":
    asyncio.run(main())
