"""Log output: redaction of secrets, JSON lines, request ids (in-process and in a real server)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from app.core.config import Settings
from app.core.logging import REDACTED, configure_logging, redact_secrets
from tests.helpers.databases import suite_backend
from tests.helpers.server import ServerProcess, clean_env


@pytest.fixture
def json_logging(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> Iterator[None]:
    # Depends on capsys so the log handler writes to the captured stderr.
    configure_logging(
        Settings(_env_file=None, DATA_DIR=tmp_path, LOG_FORMAT="json", LOG_LEVEL="INFO")
    )
    yield
    configure_logging(settings)


def test_redaction_processor_covers_keys_nesting_and_text() -> None:
    event = redact_secrets(
        None,
        "info",
        {
            "event": "connecting to postgresql://app:pa55word@db/x",
            "password": "p",
            "new_password": "p2",
            "access_token": "t",
            "Authorization": "Bearer abc",
            "LLM_API_KEY": "k",
            "client_secret": "s",
            "headers": {"authorization": "Bearer zzz", "accept": "json"},
            "items": [{"refresh_token": "r"}],
            "note": "sent Bearer eyJhbGciOi.payload.sig to upstream",
            "email": "owner@example.com",
        },
    )
    assert event["event"] == f"connecting to postgresql://app:{REDACTED}@db/x"
    for key in (
        "password",
        "new_password",
        "access_token",
        "Authorization",
        "LLM_API_KEY",
        "client_secret",
    ):
        assert event[key] == REDACTED
    assert event["headers"] == {"authorization": REDACTED, "accept": "json"}
    assert event["items"] == [{"refresh_token": REDACTED}]
    assert "eyJhbGciOi" not in event["note"]
    assert event["email"] == "owner@example.com"


@pytest.mark.usefixtures("json_logging")
def test_json_lines_redact_structlog_and_stdlib_records(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.stdlib.get_logger("app.test").info("login", email="a@b.c", password="hunter2")
    logging.getLogger("some.library").warning("token=%s", "ignored", extra={"api_key": "k-123"})
    try:
        raise ValueError("boom with postgresql://u:topsecret@h/db")
    except ValueError:
        structlog.stdlib.get_logger("app.test").exception("failed")
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert [line["event"] for line in lines][:2] == ["login", "token=ignored"]
    assert lines[0]["password"] == REDACTED and lines[0]["email"] == "a@b.c"
    assert lines[1]["api_key"] == REDACTED and lines[1]["logger"] == "some.library"
    assert "ValueError" in lines[2]["exception"] and "topsecret" not in lines[2]["exception"]
    assert all({"timestamp", "level", "logger"} <= set(line) for line in lines)


@pytest.mark.slow
def test_real_server_logs_json_lines_with_request_id(workdir: Path, database_url: str) -> None:
    """`telaten serve` as deployed: ENV=production on PostgreSQL, JSON on SQLite runs."""
    if suite_backend() == "postgresql":
        env = clean_env(ENV="production", SECRET_KEY="x" * 40, DATABASE_URL=database_url)
    else:
        env = clean_env(LOG_FORMAT="json", DATABASE_URL=database_url, DATA_DIR=str(workdir / "d"))
    with ServerProcess(env, workdir) as server:
        r = httpx.get(f"{server.base_url}/health/ready", headers={"X-Request-ID": "abc"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "abc"
        assert httpx.get(f"{server.base_url}/nope").status_code == 404
    lines = server.json_lines()  # every line parses as JSON, or this raises
    access = [line for line in lines if line["event"] == "request"]
    assert len(access) >= 2
    ready = next(line for line in access if line["path"] == "/health/ready")
    assert ready["request_id"] == "abc"
    assert ready["status"] == 200 and ready["method"] == "GET"
    assert isinstance(ready["duration_ms"], float)
    assert all(len(line["request_id"]) > 0 for line in access)
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn goes through too
    assert "x" * 40 not in server.logs()
