"""MCP client benchmark.

    .venv/bin/python bench/mcp.py [--calls 300]

1. Tool-call round trip through our wrapper (the llama_index FunctionTool the agent
   calls, over MCPManager's long-lived session) against a bare `mcp` ClientSession
   calling the same tool on the same kind of server, in the same run: median ratio,
   for stdio and for Streamable HTTP (tests/mcp_servers/toolbox.py on 127.0.0.1).
2. Startup with five servers, one of which never answers: time for MCPManager.start()
   against that server's timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name would hide
# the `mcp` package: look in the repository root instead.
sys.path = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]

from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from app.core.mcp import MCPManager  # noqa: E402
from bench._driver import free_port  # noqa: E402

TOOLBOX = [sys.executable, "-m", "tests.mcp_servers.toolbox"]
ENV = {"PYTHONPATH": str(REPO)}


async def timed(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    for _ in range(20):  # warm-up
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def bare(transport: str, url: str | None, n: int) -> list[float]:
    async with AsyncExitStack() as stack:
        if transport == "stdio":
            params = StdioServerParameters(
                command=TOOLBOX[0], args=[*TOOLBOX[1:], "stdio"], env=ENV
            )
            read, write = await stack.enter_async_context(stdio_client(params))
        else:
            read, write = await stack.enter_async_context(streamable_http_client(url or ""))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        return await timed(lambda: session.call_tool("add", {"a": 20, "b": 22}), n)


async def wrapped(config: Path, work: Path, n: int) -> list[float]:
    manager = MCPManager(config, log_dir=work / "logs")
    await manager.start()
    try:
        tool = next(t for t in manager.tools() if t.metadata.name == "add")

        async def call() -> object:
            out = await tool.acall(a=20, b=22)
            assert out.content == "42" and not out.is_error
            return out

        return await timed(call, n)
    finally:
        await manager.stop()


def write(path: Path, servers: dict[str, object]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--hang-timeout", type=float, default=3.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="telaten-bench-mcp-"))
    machine = f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"
    print(f"machine: {machine}, Python {platform.python_version()}")

    stdio_cfg = write(
        work / "stdio.json",
        {"box": {"command": TOOLBOX[0], "args": [*TOOLBOX[1:], "stdio"], "env": ENV}},
    )
    port = free_port()
    http = subprocess.Popen(
        [*TOOLBOX, "streamable-http", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        http_cfg = write(work / "http.json", {"box": {"url": url}})
        for label, transport, cfg in (
            ("stdio", "stdio", stdio_cfg),
            ("streamable-http", "http", http_cfg),
        ):
            base = await bare(transport, url, args.calls)
            ours = await wrapped(cfg, work, args.calls)
            ratio = statistics.median(ours) / statistics.median(base)
            print(
                f"{label:<16} bare ClientSession median {statistics.median(base):6.2f} ms | "
                f"our FunctionTool median {statistics.median(ours):6.2f} ms | ratio {ratio:4.2f}"
            )
    finally:
        http.terminate()
        http.wait(10)

    servers: dict[str, object] = {
        f"box{i}": {
            "command": TOOLBOX[0],
            "args": [*TOOLBOX[1:], "stdio", "--name", f"box{i}"],
            "env": ENV,
        }
        for i in range(4)
    }
    servers["stuck"] = {
        "command": sys.executable,
        "args": [str(REPO / "tests/mcp_servers/hang.py")],
        "timeout": args.hang_timeout,
        "connect_timeout": args.hang_timeout,
    }
    manager = MCPManager(write(work / "five.json", servers), log_dir=work / "logs")
    started = time.perf_counter()
    await manager.start()
    elapsed = time.perf_counter() - started
    states = {s["name"]: s["state"] for s in manager.status()}
    await manager.stop()
    print(
        f"startup, 5 servers (1 hangs, timeout {args.hang_timeout:g} s): {elapsed:.2f} s "
        f"= {elapsed / args.hang_timeout:.2f} x the hanging server's timeout; states {states}"
    )


if __name__ == "__main__":
    asyncio.run(main())
