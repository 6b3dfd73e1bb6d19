"""Shared fixtures: one migrated database and one app for the session, over ASGI.

The database kind comes from `TEST_DATABASE_URL` (see tests/helpers/databases.py).
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from tests.fakes.llm_server import FakeLLMServer
from tests.helpers.databases import fresh_database_url, suite_backend
from tests.helpers.llama_server import configured as real_llm_configured

# Hermetic settings: nothing from the developer's shell or .env leaks into tests.
for _key in list(os.environ):
    if _key in Settings.model_fields:
        del os.environ[_key]


ADMIN_PASSWORD = "Admin-Pass-For-Tests-1"


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "DATABASE_URL": database_url,
        "DATA_DIR": data_dir,
        "LOG_LEVEL": "WARNING",
        "MCP_CONFIG_PATH": data_dir / "mcp.json",
        # Real bcrypt at its lowest cost, to keep a suite full of logins fast; the
        # production cost (12) has its own tests.
        "BCRYPT_ROUNDS": 4,
        "FIRST_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def pytest_report_header() -> str:
    return f"telaten: database backend = {suite_backend()}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not real_llm_configured():
        real = pytest.mark.skip(reason="needs a local model: run scripts/test-real-llm.sh")
        for item in items:
            if "real_llm" in item.keywords:
                item.add_marker(real)
    if suite_backend() == "postgresql":
        # What does not depend on the database kind runs once, in the SQLite pass.
        once = pytest.mark.skip(reason="does not depend on the database: run on SQLite")
        for item in items:
            if "once" in item.keywords:
                item.add_marker(once)
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set TEST_DATABASE_URL)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("telaten")


@pytest.fixture(scope="session")
async def database_url(session_tmp: Path) -> AsyncIterator[str]:
    async with fresh_database_url(session_tmp, "suite") as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str, session_tmp: Path) -> Settings:
    return make_settings(database_url, session_tmp / "data")


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=30):
        yield application


def asgi_client(app: FastAPI, client_ip: str | None = None) -> httpx.AsyncClient:
    """An HTTP client for `app` over ASGI, from its own loopback address by default,
    so one test's failed logins never throttle another's."""
    ip = (
        client_ip
        or f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
    )
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as c:
        yield c


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer.running() as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLMServer) -> FakeLLMServer:
    """The fake LLM, with an empty script and no recorded requests."""
    fake_llm_server.reset()
    return fake_llm_server


def llm_settings(fake: FakeLLMServer) -> dict[str, object]:
    return {
        "LLM_BASE_URL": fake.base_url,
        "LLM_MODEL_NAME": "fake-model",
        "LLM_API_KEY": "sk-fake-key-for-tests",
        # Generous: a busy machine may take seconds to answer; the tests of the timeout
        # itself use an app of their own (`quick_timeout_client`).
        "LLM_TIMEOUT_SECONDS": 30,
        "LLM_MAX_RETRIES": 0,
    }


@pytest.fixture(scope="session")
async def ai_app(
    database_url: str, session_tmp: Path, fake_llm_server: FakeLLMServer
) -> AsyncIterator[FastAPI]:
    """The app with an LLM configured (the fake server), on the suite's database."""
    application = create_app(
        make_settings(database_url, session_tmp / "data", **llm_settings(fake_llm_server))
    )
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=30):
        yield application


@pytest.fixture
async def ai_client(ai_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(ai_app) as c:
        yield c


QUICK_LLM_TIMEOUT_SECONDS = 1.5


@pytest.fixture(scope="session")
async def quick_timeout_app(
    database_url: str, session_tmp: Path, fake_llm_server: FakeLLMServer
) -> AsyncIterator[FastAPI]:
    """`ai_app` that gives up on a silent model after 1.5 s, for the tests of that: their
    model stalls far longer, so the timeout fires however slow the machine is."""
    settings = make_settings(
        database_url,
        session_tmp / "data",
        **{**llm_settings(fake_llm_server), "LLM_TIMEOUT_SECONDS": QUICK_LLM_TIMEOUT_SECONDS},
    )
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=30):
        yield application


@pytest.fixture
async def quick_timeout_client(quick_timeout_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(quick_timeout_app) as c:
        yield c


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """An empty working directory with no .env, for subprocess tests."""
    yield tmp_path
