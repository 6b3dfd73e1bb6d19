"""A real `telaten serve` for the web client's tests, with the fake LLM and CORS for the
client's origin, on a fresh database of the suite's kind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client_api.webclient import ORIGIN, Browser, WebClient, unique_email
from tests.conftest import ADMIN_PASSWORD
from tests.fakes.llm_server import FakeLLMServer
from tests.helpers.databases import fresh_database_url
from tests.helpers.server import ServerProcess, served_env

PREFIX = "/client/v1"
GRACE_SECONDS = 5
ADMIN_EMAIL = "admin@telaten.com"
PASSWORD = "Rahasia-Warung-123"
# Streamed in small pieces, so a reply is several `token` frames.
REPLY = "Halo, Bu Dewi! Untuk menaikkan omzet, mulai dari mencatat penjualan harian."


@dataclass
class WebServer:
    process: ServerProcess
    database_url: str
    llm: FakeLLMServer

    @property
    def base_url(self) -> str:
        return self.process.base_url + PREFIX

    def tab(self, browser: Browser | None = None) -> WebClient:
        return WebClient(self.base_url, browser)


@pytest.fixture(scope="session")
def web_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer.running(default_text=REPLY) as server:
        yield server


@pytest.fixture(scope="session")
async def web_server(
    tmp_path_factory: pytest.TempPathFactory, web_llm: FakeLLMServer
) -> AsyncIterator[WebServer]:
    workdir = tmp_path_factory.mktemp("webclient")
    async with fresh_database_url(workdir, "webclient") as url:
        env = served_env(
            url,
            workdir,
            web_llm.base_url,
            FIRST_ADMIN_EMAIL=ADMIN_EMAIL,
            FIRST_ADMIN_PASSWORD=ADMIN_PASSWORD,
            CORS_ORIGINS=ORIGIN,
            CLIENT_REFRESH_GRACE_SECONDS=str(GRACE_SECONDS),
            # Every test signs up from 127.0.0.1.
            REGISTER_MAX_PER_CLIENT="100000",
            LOGIN_MAX_FAILURES_PER_CLIENT="100000",
        )
        process = ServerProcess(env, Path(workdir))
        try:
            process.wait_ready(timeout=120)
            yield WebServer(process, url, web_llm)
        finally:
            process.stop()


@pytest.fixture
async def tab(web_server: WebServer) -> AsyncIterator[WebClient]:
    async with web_server.tab() as client:
        yield client


async def signed_up(server: WebServer, browser: Browser | None = None) -> WebClient:
    """A new owner who has just registered (and so logged in) in a new tab."""
    client = server.tab(browser)
    await client.sign_up("Bu Dewi", unique_email(), PASSWORD)
    return client


async def onboarded(server: WebServer, name: str = "Warung Bu Dewi") -> WebClient:
    """A new owner who went through onboarding."""
    client = await signed_up(server)
    r = await client.onboard(name)
    assert r.status_code == 201, r.text
    return client


async def admin(server: WebServer) -> WebClient:
    client = server.tab()
    r = await client.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert r.status_code == 200, r.text
    return client


def server_log_is_clean(server: WebServer) -> None:
    logs = server.process.logs()
    assert "unhandled_exception" not in logs and "Traceback" not in logs, logs[-8000:]
