"""Chat benchmark: the server-side overhead of one chat turn.

    .venv/bin/python bench/chat.py [--turns 200] [--concurrency 20] [--database-url URL]

Starts the fake OpenAI-compatible server (tests/fakes/llm_server.py, answering at once
with a short reply) and Telaten (uvicorn, one worker) configured to use it. Each turn is
`POST /api/v1/chat/stream` read until `done`; its overhead is that wall time minus the
time the fake LLM spent on the same turn (the fake records it per request). Reported:
median and p95 overhead over --turns sequential turns, then over --turns turns sent by
--concurrency clients at once (each in its own session), with turns/s.

Then the ceiling, in the same run: a bare OpenAI-SDK streaming call to the same fake
(read to its end) against a whole plain turn, and a turn in which the model calls one
tool (`get_my_account`, then answers) against two bare calls, medians over --turns
sequential turns each; with the server's CPU time per turn (from /proc).
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
from _driver import REPO, Server, cpu_seconds, free_port, uvicorn_args

TOOL_MARKER = "[pakai-alat]"

PASSWORD = "Bench-Password-123"


async def account(client: httpx.AsyncClient) -> dict[str, str]:
    email = f"chat-{uuid.uuid4().hex[:10]}@example.com"
    r = await client.post(
        "/api/v1/auth/register", json={"email": email, "name": "Bench", "password": PASSWORD}
    )
    r.raise_for_status()
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def turn(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    session_id: str | None,
    marker: str = "",
) -> tuple[str, str, float]:
    """(tag, session id, seconds from request to the `done` event)."""
    tag = f"turn {uuid.uuid4().hex}{marker}"
    started = time.perf_counter()
    async with client.stream(
        "POST",
        "/api/v1/chat/stream",
        json={"session_id": session_id, "content": tag},
        headers=headers,
    ) as r:
        r.raise_for_status()
        last_event, sid = "", session_id
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                last_event = line[7:]
            elif line.startswith("data: ") and last_event == "session" and sid is None:
                sid = httpx.Response(200, content=line[6:]).json()["session_id"]
            if last_event == "done":
                break
            if last_event == "error":
                raise RuntimeError(f"turn failed: {line}")
    return tag, sid or "", time.perf_counter() - started


async def run(
    base_url: str, fake_url: str, turns: int, concurrency: int
) -> tuple[list[float], float]:
    """Overheads in ms, and turns per second."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        headers = [await account(client) for _ in range(concurrency)]
        per_client = turns // concurrency
        results: list[tuple[str, float]] = []

        async def conversation(h: dict[str, str]) -> None:
            sid = None
            for _ in range(per_client):
                tag, sid, seconds = await turn(client, h, sid)
                results.append((tag, seconds))

        began = time.perf_counter()
        await asyncio.gather(*(conversation(h) for h in headers))
        elapsed = time.perf_counter() - began
        calls = (await client.get(f"{fake_url}/_calls")).json()
    in_llm = {c["last_user"]: c["seconds"] for c in calls}
    overheads = [(seconds - in_llm[tag]) * 1000 for tag, seconds in results]
    return overheads, len(results) / elapsed


async def bare_calls(fake_url: str, count: int) -> list[float]:
    """Seconds of `count` sequential streaming calls through the OpenAI SDK itself."""
    import openai

    client = openai.AsyncOpenAI(base_url=f"{fake_url}/v1", api_key="sk-bench", max_retries=0)
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        stream = await client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": f"bare {uuid.uuid4().hex}"}],
            stream=True,
        )
        async for _chunk in stream:
            pass
        seconds.append(time.perf_counter() - started)
    await client.close()
    return seconds


async def ceiling(base_url: str, fake_url: str, pid: int, turns: int) -> None:
    """Plain and one-tool turns against bare SDK calls, medians of sequential runs."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        headers = await account(client)
        for _ in range(5):  # warm both paths
            await turn(client, headers, None)
        bare = statistics.median(await bare_calls(fake_url, turns))
        for label, marker, calls in (("plain turn", "", 1), ("turn with one tool", TOOL_MARKER, 2)):
            cpu = cpu_seconds(pid)
            sid = None
            walls = []
            for _ in range(turns):
                _tag, sid, seconds = await turn(client, headers, sid, marker)
                walls.append(seconds)
            cpu_per_turn = (cpu_seconds(pid) - cpu) / turns
            wall = statistics.median(walls)
            print(
                f"{label:<20} median {wall * 1000:7.2f} ms, bare SDK x{calls} "
                f"{bare * calls * 1000:6.2f} ms: ratio {wall / (bare * calls):5.2f}; "
                f"server CPU per turn {cpu_per_turn * 1000:6.2f} ms"
            )


def describe(label: str, overheads: list[float], rate: float) -> str:
    p95 = statistics.quantiles(overheads, n=20, method="inclusive")[18]
    median = statistics.median(overheads)
    return (
        f"{label:<28} turns {len(overheads):4d}  overhead median {median:7.2f} ms"
        f"  p95 {p95:7.2f} ms  ({rate:6.1f} turns/s)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="telaten-bench-chat-"))
    fake_port, app_port = free_port(), free_port()
    fake = Server(
        [
            sys.executable,
            "-m",
            "tests.fakes.llm_server",
            "--port",
            str(fake_port),
            "--tool-marker",
            TOOL_MARKER,
        ],
        {},
        work,
        fake_port,
    )
    env = {
        "DATA_DIR": str(work / "data"),
        "LOG_LEVEL": "WARNING",
        "REGISTER_MAX_PER_CLIENT": "1000000",
        "CHAT_TURNS_PER_WINDOW": "100000",  # a benchmark's turns, not one owner's
        "LLM_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
        "LLM_MODEL_NAME": "fake-model",
        "LLM_MAX_RETRIES": "0",
        "BCRYPT_ROUNDS": "4",
    }
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    app = Server(uvicorn_args("app.main:create_app", app_port, factory=True), env, work, app_port)
    try:
        fake.wait("/_calls")
        app.wait("/health")
        print(
            f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; "
            f"database: {'postgresql' if args.database_url else 'sqlite'}"
        )
        fake_url = f"http://127.0.0.1:{fake_port}"
        seq, seq_rate = await run(app.base_url, fake_url, args.turns, 1)
        print(describe("sequential", seq, seq_rate))
        par, par_rate = await run(app.base_url, fake_url, args.turns, args.concurrency)
        print(describe(f"{args.concurrency} concurrent streams", par, par_rate))
        await ceiling(app.base_url, fake_url, app.proc.pid, args.turns)
    finally:
        app.stop()
        fake.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    asyncio.run(main())
