"""Apps of a test's own, and bounded waiting."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.main import create_app
from tests.conftest import llm_settings, make_settings
from tests.fakes.llm_server import FakeLLMServer, Recorded


@asynccontextmanager
async def chat_app(
    database_url: str, data_dir: Path, fake: FakeLLMServer, **overrides: object
) -> AsyncIterator[FastAPI]:
    """An app with settings of its own and the fake LLM. Its LLM timeout is long, so a
    reply a test holds back (`Reply(stall_after_chunks=..., resume=...)`) is no timeout."""
    settings = make_settings(
        database_url,
        data_dir,
        **{**llm_settings(fake), "LLM_TIMEOUT_SECONDS": 60, **overrides},
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        yield app


async def wait_for(predicate: Callable[[], object], what: str, bound: float = 60) -> None:
    """Poll `predicate` until it is true; fail after `bound` seconds (a bound on a wait,
    never an assertion on speed)."""
    deadline = time.monotonic() + bound
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


def calls_with(fake: FakeLLMServer, marker: str) -> list[Recorded]:
    """The chat requests the fake LLM received whose JSON contains `marker`."""
    return [c for c in list(fake.calls) if marker in json.dumps(c.body)]
