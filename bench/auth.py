"""Authentication benchmark: the cost of auth, and whether bcrypt stalls other requests.

    .venv/bin/python bench/auth.py [--seconds 10] [--concurrency 16] [--database-url URL]

Starts, the same way (uvicorn, one worker, 127.0.0.1, no access log from uvicorn):
  1. a bare FastAPI hello endpoint (bench/hello_app.py): the ceiling;
  2. Telaten (default settings, bcrypt at 12 rounds) on SQLite in a temp dir, or on
     --database-url (PostgreSQL, as deployed).
Then measures
  - hello req/s;  authenticated GET /api/v1/auth/me req/s, as a ratio to hello;
  - the server's CPU time per request of each (from /proc), and their ratio: the share
    of the hello ceiling /auth/me reaches when the server, not this driver, is the
    bottleneck (on 2 cores the driver's own CPU caps both throughputs);
  - /auth/me p99 alone, and again while --logins clients log in back to back; the ratio of
    the two p99s shows whether password hashing blocks other requests (near 1 = it does not).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _driver import cpu_seconds, drive, hello_and_app

EMAIL = "bench-owner@example.com"
PASSWORD = "Bench-Password-123"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--logins", type=int, default=4, help="concurrent login clients in phase 3")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="telaten-bench-"))
    env = {
        "DATA_DIR": str(work / "data"),
        "LOG_LEVEL": "WARNING",
        "REGISTER_MAX_PER_CLIENT": "1000000",
        "LOGIN_MAX_FAILURES_PER_CLIENT": "1000000",
    }
    if args.database_url:
        env["DATABASE_URL"] = args.database_url

    hello, app = hello_and_app(env, work)
    try:
        hello.wait("/hello")
        app.wait("/health")
        async with httpx.AsyncClient(base_url=app.base_url, timeout=30) as c:
            await c.post(
                "/api/v1/auth/register",
                json={"email": EMAIL, "name": "Bench", "password": PASSWORD},
            )
            r = await c.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
            r.raise_for_status()
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

        print(
            f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; "
            f"database: {'postgresql' if args.database_url else 'sqlite'}"
        )
        print(f"{args.concurrency} concurrent clients, {args.seconds:g} s per phase\n")

        hello_cpu = cpu_seconds(hello.proc.pid)
        base = await drive(
            "hello (bare FastAPI)",
            hello.base_url,
            lambda c: c.get("/hello"),
            concurrency=args.concurrency,
            seconds=args.seconds,
        )
        hello_cpu = (cpu_seconds(hello.proc.pid) - hello_cpu) / max(base.count, 1)
        app_cpu = cpu_seconds(app.proc.pid)
        me = await drive(
            "GET /auth/me",
            app.base_url,
            lambda c: c.get("/api/v1/auth/me", headers=headers),
            concurrency=args.concurrency,
            seconds=args.seconds,
        )
        me_cpu = (cpu_seconds(app.proc.pid) - app_cpu) / max(me.count, 1)

        async def login_loop() -> object:
            return await drive(
                "POST /auth/login (concurrently)",
                app.base_url,
                lambda c: c.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}),
                concurrency=args.logins,
                seconds=args.seconds,
            )

        me_busy, logins = await asyncio.gather(
            drive(
                "GET /auth/me while logging in",
                app.base_url,
                lambda c: c.get("/api/v1/auth/me", headers=headers),
                concurrency=args.concurrency,
                seconds=args.seconds,
            ),
            login_loop(),
        )
        print(base.line())
        print(me.line(base))
        print(me_busy.line(base))
        print(logins.line())  # type: ignore[attr-defined]
        print()
        p99_ratio = me_busy.pct(99) / me.pct(99)
        print(
            f"server CPU per request: hello {hello_cpu * 1000:.2f} ms, "
            f"/auth/me {me_cpu * 1000:.2f} ms"
        )
        print(f"ratio  /auth/me req/s to hello req/s:              {me.rps / base.rps:.3f}")
        print(f"ratio  hello CPU/request to /auth/me CPU/request:  {hello_cpu / me_cpu:.3f}")
        print(f"ratio  /auth/me p99 with logins to p99 without:     {p99_ratio:.2f}")
        print(f"errors: {base.errors + me.errors + me_busy.errors + logins.errors}")  # type: ignore[attr-defined]
    finally:
        hello.stop()
        app.stop()


if __name__ == "__main__":
    asyncio.run(main())
