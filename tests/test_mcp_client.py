"""The MCP client against real servers: stdio subprocesses and HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.core.mcp import MCPManager
from tests.helpers.mcp import HttpToolbox, hang_entry, stdio_entry, write_config

# The MCP client manager holds nothing in the database.
pytestmark = pytest.mark.once


def manager(config: Path, tmp_path: Path, **kw: object) -> MCPManager:
    return MCPManager(
        config,
        log_dir=tmp_path / "logs",
        ping_interval=kw.pop("ping_interval", 0.5),  # type: ignore[arg-type]
        max_backoff=kw.pop("max_backoff", 1.0),  # type: ignore[arg-type]
        environ=kw.pop("environ", os.environ),  # type: ignore[arg-type]
    )


def gone(pid: int) -> bool:
    """True once the process no longer exists (or is a zombie nobody will reap)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def pid_of(m: MCPManager, server: str) -> int:
    result = await m.call(server, "whoami", {})
    assert not result.is_error, result.text
    return json.loads(result.text)["pid"]


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[MCPManager]:
    """One stdio toolbox that lists its tools two at a time."""
    config = write_config(
        tmp_path / "mcp.json",
        {"box": stdio_entry("--page-size", "2", env={"TOOLBOX_GREETING": "${GREETING:-halo}"})},
    )
    m = manager(config, tmp_path, environ={**os.environ, "GREETING": "selamat pagi"})
    await m.start()
    yield m
    await m.stop()


async def test_stdio_tools_with_real_schemas(box: MCPManager) -> None:
    [status] = box.status()
    assert status["state"] == "up" and status["transport"] == "stdio"
    names = [t.metadata.name for t in box.tools()]
    # Seven tools, listed two per page: pagination was followed to the end.
    assert names == ["add", "search_products", "fail_always", "slow", "picture", "whoami", "echo"]
    tools = {t.metadata.name: t for t in box.tools()}
    params = tools["search_products"].metadata.get_parameters_dict()
    assert params["required"] == ["query"]
    assert params["properties"]["category"]["enum"] == ["food", "drink", "craft"]
    assert params["properties"]["query"]["description"] == "words to look for"
    assert "PriceRange" in params["$defs"]
    assert tools["add"].metadata.get_parameters_dict()["properties"]["a"]["type"] == "integer"
    assert "of the 'box' server" in tools["add"].metadata.description


async def test_stdio_calls_results_errors_images(box: MCPManager) -> None:
    tools = {t.metadata.name: t for t in box.tools()}
    out = await tools["add"].acall(a=2, b=40)
    assert out.content == "42" and not out.is_error
    out = await tools["search_products"].acall(query="kopi", price={"min": 5000, "max": 9000})
    assert out.content == "query=kopi category=food tags= price=5000-9000"
    out = await tools["fail_always"].acall(reason="no")
    assert out.is_error is True and "fail_always" in out.content
    out = await tools["picture"].acall()
    assert out.content.startswith("[image: image/png,") and not out.is_error
    out = await tools["whoami"].acall()
    assert json.loads(out.content)["greeting"] == "selamat pagi"  # ${GREETING:-halo} expanded


async def test_concurrent_calls_share_one_session(box: MCPManager) -> None:
    pid = await pid_of(box, "box")
    results = await asyncio.gather(*(box.call("box", "add", {"a": i, "b": i}) for i in range(30)))
    assert [r.text for r in results] == [str(2 * i) for i in range(30)]
    assert await pid_of(box, "box") == pid  # no new process per call


async def test_call_timeout_is_an_error_result(tmp_path: Path) -> None:
    """The call timeout bounds calls only: a short one does not cut the child's start
    (a Python process importing the SDK, seconds on a busy machine), which has the
    connect timeout."""
    config = write_config(
        tmp_path / "mcp.json", {"box": stdio_entry(timeout=0.5, connect_timeout=600)}
    )
    m = manager(config, tmp_path)
    await m.start()
    try:
        assert m.status()[0]["state"] == "up"
        result = await m.call("box", "slow", {"seconds": 60})
        assert result.is_error and "did not answer within 0.5 s" in result.text
        assert (await m.call("box", "add", {"a": 1, "b": 1})).text == "2"  # still usable
    finally:
        await m.stop()


@pytest.fixture(params=["streamable-http", "sse"])
def http_toolbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HttpToolbox]:
    server = HttpToolbox(request.param, tmp_path)
    yield server
    server.stop()


async def test_http_transports(http_toolbox: HttpToolbox, tmp_path: Path) -> None:
    entry = {"url": http_toolbox.url, "headers": {"X-Client": "telaten"}}
    if http_toolbox.transport == "sse":
        assert http_toolbox.url.endswith("/sse")  # transport inferred from the URL
    config = write_config(tmp_path / "mcp.json", {"remote": entry})
    m = manager(config, tmp_path)
    await m.start()
    try:
        [status] = m.status()
        assert status["state"] == "up" and status["transport"] == http_toolbox.transport
        tools = {t.metadata.name: t for t in m.tools()}
        assert (await tools["echo"].acall(text="halo")).content == f"{http_toolbox.transport}: halo"
        assert (await tools["fail_always"].acall(reason="x")).is_error
        results = await asyncio.gather(
            *(m.call("remote", "add", {"a": i, "b": 1}) for i in range(10))
        )
        assert [r.text for r in results] == [str(i + 1) for i in range(10)]
    finally:
        await m.stop()


@pytest.mark.slow
async def test_a_hanging_server_delays_startup_only_by_its_timeout(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "mcp.json", {"stuck": hang_entry(connect_timeout=1.5), "box": stdio_entry()}
    )
    m = manager(config, tmp_path, max_backoff=30)
    # The stuck server never answers: without its own timeout the start would never end.
    # (A bound on the wait, not a measure of speed: starting "box" may be slow.)
    async with asyncio.timeout(120):
        await m.start()
    try:
        states = {s["name"]: s for s in m.status()}
        assert states["box"]["state"] == "up"
        assert states["stuck"]["state"] in ("down", "connecting")
        assert states["stuck"]["last_error"] == "timed out"
        assert (await m.call("box", "add", {"a": 1, "b": 2})).text == "3"
    finally:
        await m.stop()


@pytest.mark.slow
async def test_a_killed_server_is_marked_down_and_reconnected(box: MCPManager) -> None:
    pid = await pid_of(box, "box")
    os.kill(pid, signal.SIGKILL)
    result = await box.call("box", "add", {"a": 1, "b": 1})
    assert result.is_error and ("went away" in result.text or "unavailable" in result.text)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if box.status()[0]["state"] == "up" and box.status()[0]["attempts"] >= 2:
            break
    assert box.status()[0]["state"] == "up"
    assert (await box.call("box", "add", {"a": 1, "b": 1})).text == "2"
    assert await pid_of(box, "box") != pid


@pytest.mark.slow
async def test_calls_to_a_down_server_say_unavailable(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"stuck": hang_entry(connect_timeout=0.5)})
    m = manager(config, tmp_path)
    await m.start()
    try:
        result = await m.call("stuck", "anything", {})
        assert result.is_error and "unavailable" in result.text and "timed out" in result.text
    finally:
        await m.stop()


async def test_name_collisions_prefixes_and_filters(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "mcp.json",
        {
            "alpha": stdio_entry("--name", "alpha", tools=["echo", "add"]),
            "beta": stdio_entry("--name", "beta", exclude_tools=["add", "slow", "picture"]),
            "gamma": stdio_entry("--name", "gamma", prefix="g", tools=["whoami"]),
        },
    )
    m = manager(config, tmp_path)
    await m.start()
    try:
        names = sorted(t.metadata.name for t in m.tools(reserved={"whoami"}))
        assert names == sorted(
            [
                "add",  # only alpha offers it
                "alpha_echo",  # both alpha and beta have echo: server-prefixed
                "beta_echo",
                "fail_always",
                "search_products",
                "beta_whoami",  # 'whoami' is reserved (a domain tool's name)
                "g_whoami",  # gamma asked for its own prefix
            ]
        )
        tools = {t.metadata.name: t for t in m.tools(reserved={"whoami"})}
        assert (await tools["alpha_echo"].acall(text="x")).content == "alpha: x"
        assert (await tools["beta_echo"].acall(text="x")).content == "beta: x"
    finally:
        await m.stop()


@pytest.mark.slow
async def test_reload_starts_stops_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    write_config(path, {"one": stdio_entry("--name", "one"), "two": stdio_entry("--name", "two")})
    m = manager(path, tmp_path)
    await m.start()
    try:
        one_pid, two_pid = await pid_of(m, "one"), await pid_of(m, "two")
        write_config(
            path,
            {
                "one": stdio_entry("--name", "one"),  # unchanged: keeps its session
                "three": stdio_entry("--name", "three"),
                "broken": {"transport": "stdio"},
            },
        )
        changes = await m.reload()
        assert changes == {"added": ["three"], "removed": ["two"], "restarted": []}
        assert [s["name"] for s in m.status()] == ["one", "three"]
        assert len(m.config_errors) == 1 and "'broken'" in m.config_errors[0]
        assert await pid_of(m, "one") == one_pid
        await asyncio.sleep(0.5)
        assert gone(two_pid)
    finally:
        await m.stop()


@pytest.mark.slow
async def test_shutdown_leaves_no_child_process(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "mcp.json",
        {
            "a": stdio_entry("--name", "a"),
            "b": stdio_entry("--name", "b"),
            "stuck": hang_entry(connect_timeout=0.5),
        },
    )
    m = manager(config, tmp_path)
    await m.start()
    pids = [await pid_of(m, "a"), await pid_of(m, "b")]
    assert not any(gone(p) for p in pids)
    await m.stop()
    assert all(gone(p) for p in pids)
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    assert not {str(p) for p in pids} & set(children)


async def _silent_sse_server() -> tuple[asyncio.Server, int]:
    """Answers GET /sse with an event-stream header and then says nothing, ever."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(3600)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_an_sse_server_that_never_sends_its_endpoint_is_bounded(tmp_path: Path) -> None:
    server, port = await _silent_sse_server()
    config = write_config(
        tmp_path / "mcp.json",
        {"mute": {"url": f"http://127.0.0.1:{port}/sse", "connect_timeout": 1}},
    )
    m = manager(config, tmp_path, max_backoff=30)
    try:
        async with asyncio.timeout(60):  # a bound on the wait: the connect timeout ends it
            await m.start()
        [status] = m.status()
        assert status["state"] != "up" and status["last_error"] == "timed out"
        async with asyncio.timeout(60):
            await m.stop()
    finally:
        server.close()


@pytest.mark.slow
async def test_stop_interrupts_a_connection_in_progress(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"stuck": hang_entry(connect_timeout=120)})
    m = manager(config, tmp_path)
    m._launch(m._read_config())  # start connecting without waiting for it
    await asyncio.sleep(0.5)
    started = time.monotonic()
    await m.stop()
    assert time.monotonic() - started < 60  # well before the 120 s connect timeout


async def test_reload_of_an_unreadable_file_keeps_the_running_servers(box: MCPManager) -> None:
    pid = await pid_of(box, "box")
    box.config_path.write_text('{"mcpServers": {"box": ')  # saved half-way
    assert await box.reload() == {"added": [], "removed": [], "restarted": []}
    assert len(box.config_errors) == 1 and "cannot be read as JSON" in box.config_errors[0]
    assert box.status()[0]["state"] == "up" and await pid_of(box, "box") == pid
