"""The MCP client inside the app: admin endpoints, the CLI, and a chat turn that calls an
external MCP tool end to end."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.main import create_app
from tests.conftest import ADMIN_PASSWORD, asgi_client, llm_settings, make_settings
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, bearer, login, new_account
from tests.helpers.mcp import hang_entry, stdio_entry, write_config
from tests.helpers.server import clean_env, telaten
from tests.helpers.sse import chat


@pytest.fixture
async def mcp_app(
    database_url: str, tmp_path: Path, fake_llm: FakeLLMServer
) -> AsyncIterator[FastAPI]:
    config = write_config(
        tmp_path / "mcp.json",
        {"box": stdio_entry("--name", "box"), "stuck": hang_entry(connect_timeout=0.5)},
    )
    settings = make_settings(
        database_url,
        tmp_path / "data",
        MCP_CONFIG_PATH=config,
        MCP_PING_INTERVAL_SECONDS=0.5,
        **llm_settings(fake_llm),
    )
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        yield app


async def admin(c: httpx.AsyncClient, app: FastAPI) -> dict[str, str]:
    r = await login(c, app.state.context.settings.FIRST_ADMIN_EMAIL, ADMIN_PASSWORD)
    assert r.status_code == 200, r.text
    return bearer(r.json()["access_token"])


async def test_chat_turn_calls_an_external_mcp_tool(
    mcp_app: FastAPI, fake_llm: FakeLLMServer
) -> None:
    async with asgi_client(mcp_app) as c:
        owner = await new_account(c)
        fake_llm.script(
            Reply.tool_call(
                "search_products", {"query": "keripik", "category": "food", "price": {"min": 10000}}
            ),
            Reply.of_text("Ada keripik mulai Rp10.000."),
        )
        s = await chat(c, owner.headers, "Cari keripik di katalog")
    assert s.names[:3] == ["session", "tool_call", "tool_result"], s.events
    call, result = s.first("tool_call"), s.first("tool_result")
    assert call["name"] == "search_products"
    # The stdio server's own words come back to the client.
    expected_output = "query=keripik category=food tags= price=10000-None"
    assert result == {
        "id": call["id"],
        "name": "search_products",
        "output": expected_output,
        "is_error": False,
    }
    assert s.names[-1] == "done"
    # The model was offered the server's real parameters.
    offered = {t["function"]["name"]: t["function"] for t in fake_llm.requests[0]["tools"]}
    assert offered["search_products"]["parameters"]["properties"]["category"]["enum"] == [
        "food",
        "drink",
        "craft",
    ]
    assert "get_my_account" in offered  # domain tools and MCP tools side by side


async def test_chat_turn_calls_a_tool_with_parameters_named_self_class_and_dashed(
    database_url: str, tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    """Property names that are no Python parameter (`class`, `file-path`) or clash with
    one (`self`, FunctionTool.acall's own; `kwargs`) reach the server as they were sent,
    at the top level and inside an object."""
    config = write_config(
        tmp_path / "mcp.json",
        {"odd": stdio_entry("--name", "odd", "--odd-names", tools=["odd_names", "echo"])},
    )
    # A first request to the model may be slow on a busy machine: no timeout flake here.
    llm = {**llm_settings(fake_llm), "LLM_TIMEOUT_SECONDS": 10}
    app = create_app(make_settings(database_url, tmp_path / "data", MCP_CONFIG_PATH=config, **llm))
    arguments = {
        "self": "Bu Sari",
        "class": "UMKM",
        "file-path": "/data/laporan.csv",
        "kwargs": 3,
        "options": {"self": True, "from": "pasar"},
    }
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=30),
        asgi_client(app) as c,
    ):
        owner = await new_account(c)
        fake_llm.script(
            Reply.tool_calls_of(("odd_names", arguments), ("echo", {"text": "halo"})),
            Reply.of_text("Sudah."),
        )
        s = await chat(c, owner.headers, "Panggil odd_names")
    assert s.names[-1] == "done", s.events
    odd, echo = s.all("tool_result")
    assert odd["is_error"] is False, odd
    assert json.loads(odd["output"]) == arguments  # the server got exactly these names
    assert echo == {**echo, "output": "odd: halo", "is_error": False}
    offered = {t["function"]["name"]: t["function"] for t in fake_llm.requests[0]["tools"]}
    assert set(offered["odd_names"]["parameters"]["properties"]) == set(arguments)
    assert s.first("tool_call")["arguments"] == arguments


async def test_admin_sees_servers_and_reloads(mcp_app: FastAPI, tmp_path: Path) -> None:
    async with asgi_client(mcp_app) as c:
        headers = await admin(c, mcp_app)
        user = await new_account(c)
        assert (await c.get(f"{API}/admin/mcp/servers")).status_code == 401
        assert (await c.get(f"{API}/admin/mcp/servers", headers=user.headers)).status_code == 403
        assert (await c.post(f"{API}/admin/mcp/reload", headers=user.headers)).status_code == 403

        r = await c.get(f"{API}/admin/mcp/servers", headers=headers)
        assert r.status_code == 200
        servers = {s["name"]: s for s in r.json()["servers"]}
        assert servers["box"]["state"] == "up" and "echo" in servers["box"]["tools"]
        assert servers["stuck"]["state"] != "up" and servers["stuck"]["last_error"] == "timed out"

        ready = (await c.get("/health/ready", headers=headers)).json()
        assert ready["mcp_servers"]["box"] == "up"  # reported, and ready regardless of "stuck"
        assert "mcp_servers" not in (await c.get("/health/ready")).json()  # to admins only

        write_config(
            mcp_app.state.context.settings.MCP_CONFIG_PATH, {"box": stdio_entry("--name", "box")}
        )
        r = await c.post(f"{API}/admin/mcp/reload", headers=headers)
        assert r.status_code == 200
        body = r.json()
        assert body["removed"] == ["stuck"] and body["added"] == [] and body["restarted"] == []
        assert [s["name"] for s in body["servers"]] == ["box"]


@pytest.mark.slow
def test_cli_mcp_list(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"box": stdio_entry("--name", "box")})
    env = clean_env(
        MCP_CONFIG_PATH=str(config), DATA_DIR=str(tmp_path / "d"), PATH=os.environ["PATH"]
    )
    result = telaten("mcp", "list", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "box" in result.stdout and "up" in result.stdout and "search_products" in result.stdout

    write_config(
        config,
        {"box": stdio_entry("--name", "box"), "stuck": hang_entry(connect_timeout=0.5), "bad": {}},
    )
    result = telaten("mcp", "list", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "timed out" in result.stdout and "'bad'" in result.stderr
