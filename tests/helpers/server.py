"""Run the real `telaten` command in a subprocess and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import httpx

from app.core.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without any Telaten setting, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    env.pop("TEST_DATABASE_URL", None)
    env.update(overrides)
    return env


def served_env(
    database_url: str, workdir: Path, llm_base_url: str, **overrides: str
) -> dict[str, str]:
    """The environment of a `telaten serve` under test: its database and data directory,
    bcrypt at its cheapest, no MCP servers, quiet logs, and the (fake) LLM at
    `llm_base_url`; `overrides` on top (any of these included)."""
    settings = {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(workdir / "data"),
        "BCRYPT_ROUNDS": "4",
        "MCP_CONFIG_PATH": str(workdir / "no-mcp.json"),
        "LLM_BASE_URL": llm_base_url,
        "LLM_MODEL_NAME": "fake-model",
        "LLM_API_KEY": "sk-fake-key-for-tests",
        "LLM_MAX_RETRIES": "0",
        "LOG_LEVEL": "WARNING",
    }
    return clean_env(**{**settings, **overrides})


def telaten(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `telaten ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ChildServer:
    """An HTTP server in a child process on a free loopback port, its output kept in a
    file; ready once `ready_path` answers 200 (a bounded wait, never a speed test)."""

    ready_path = "/health"
    name = "server"

    def __init__(self, args: list[str], env: dict[str, str] | None, cwd: Path) -> None:
        self.cwd = cwd
        self.log_path = cwd / f"{self.name}-{self.port}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 120) -> None:
        # Generous: a start takes 2 s on an idle machine and over 40 s on a loaded one,
        # and no test may depend on how fast a process starts.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}"
                )
            try:
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready in {timeout}s:\n{self.logs()}")

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.ready_path}"

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the process dies mid-work, as a crash or an OOM kill would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Self:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess(ChildServer):
    """`telaten serve` on a free loopback port; stderr (the logs) kept in a file."""

    def __init__(self, env: dict[str, str], cwd: Path, *extra_args: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), *extra_args],
            {**env, "PYTHONPATH": str(REPO_ROOT)},
            cwd,
        )

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs().splitlines() if line.strip()]
