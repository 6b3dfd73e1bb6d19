"""Running the test MCP servers (tests/mcp_servers) for the MCP client tests."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.server import REPO_ROOT, free_port

PY = sys.executable


def stdio_entry(*args: str, **extra: Any) -> dict[str, Any]:
    env = {"PYTHONPATH": str(REPO_ROOT), **extra.pop("env", {})}
    return {
        "command": PY,
        "args": ["-m", "tests.mcp_servers.toolbox", "stdio", *args],
        "env": env,
        **extra,
    }


def hang_entry(**extra: Any) -> dict[str, Any]:
    return {"command": PY, "args": [str(REPO_ROOT / "tests/mcp_servers/hang.py")], **extra}


def write_config(path: Path, servers: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


class HttpToolbox:
    """The toolbox server over Streamable HTTP or SSE, in a subprocess on 127.0.0.1."""

    def __init__(self, transport: str, workdir: Path) -> None:
        import subprocess

        self.port = free_port()
        self.transport = transport
        self.log = (workdir / f"toolbox-{transport}-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [
                PY,
                "-m",
                "tests.mcp_servers.toolbox",
                transport,
                "--port",
                str(self.port),
                "--name",
                transport,
            ],
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        path = "/mcp" if transport == "streamable-http" else "/sse"
        self.url = f"http://127.0.0.1:{self.port}{path}"
        # A bound on the wait, not a speed test: a loaded machine takes many seconds to
        # start a Python process that imports the SDK.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=0.5)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"{transport} toolbox did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()
