"""The `telaten` command as a user runs it: no .env, real processes, real HTTP."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import ServerProcess, clean_env, telaten

# Each test runs the real command in a subprocess.
pytestmark = pytest.mark.slow


def test_serve_with_no_env_file_uses_sqlite_and_serves_health_and_docs(workdir: Path) -> None:
    assert not (workdir / ".env").exists()
    with ServerProcess(clean_env(), workdir) as server:
        assert httpx.get(f"{server.base_url}/health").json() == {"status": "ok"}
        assert httpx.get(f"{server.base_url}/health/ready").status_code == 200
        docs = httpx.get(f"{server.base_url}/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert (workdir / ".telaten" / "telaten.db").exists()
    assert stat.S_IMODE((workdir / ".telaten").stat().st_mode) == 0o700
    key_file = workdir / ".telaten" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text() not in server.logs()


def test_production_with_short_secret_refuses_to_start(workdir: Path) -> None:
    result = telaten(
        "serve",
        env=clean_env(
            ENV="production",
            SECRET_KEY="short",
            DATABASE_URL="postgresql+asyncpg://u:dbpass@127.0.0.1:1/x",
        ),
        cwd=workdir,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert "dbpass" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) <= 3  # one message, not a dump


def test_production_on_sqlite_refuses_to_start(workdir: Path) -> None:
    result = telaten("serve", env=clean_env(ENV="production", SECRET_KEY="y" * 40), cwd=workdir)
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_uvicorn_import_string_also_refuses_unsafe_production(workdir: Path) -> None:
    """Deployments that run `uvicorn app.main:app` get the same guard."""
    import subprocess
    import sys

    from tests.helpers.server import REPO_ROOT

    result = subprocess.run(
        [sys.executable, "-c", "import app.main as m; m.app"],
        env={**clean_env(ENV="production"), "PYTHONPATH": str(REPO_ROOT)},
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "SECRET_KEY is required" in result.stderr


def test_config_prints_effective_settings_with_secrets_masked(workdir: Path) -> None:
    env = clean_env(
        SECRET_KEY="a-very-long-and-secret-signing-key-123456",
        LLM_API_KEY="sk-test-123",
        DATABASE_URL="postgresql+asyncpg://app:pg-pass@127.0.0.1/telaten",
        PORT="9123",
    )
    result = telaten("config", "--json", env=env, cwd=workdir)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["PORT"] == 9123
    assert values["SECRET_KEY"] == "**********"
    assert values["DATABASE_URL"] == "postgresql+asyncpg://app:***@127.0.0.1/telaten"
    for secret in ("a-very-long-and-secret", "sk-test-123", "pg-pass"):
        assert secret not in result.stdout

    table = telaten("config", env=env, cwd=workdir)
    assert table.returncode == 0 and "LLM_API_KEY" in table.stdout
    assert "sk-test-123" not in table.stdout
