"""Faults during real traffic, on a real `telaten serve`: the process told to stop in the
middle of a chat stream, and an MCP tool server killed in the middle of a tool call.

(The database going away is in test_database_outage.py; the LLM dying mid-stream and the
client hanging up mid-stream in test_chat.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, Account, new_account
from tests.helpers.mcp import stdio_entry, write_config
from tests.helpers.server import ServerProcess, clean_env
from tests.helpers.sse import parse_sse

# Processes killed and servers broken on purpose.
pytestmark = pytest.mark.slow


def server_env(database_url: str, workdir: Path, fake: FakeLLMServer) -> dict[str, str]:
    config = write_config(workdir / "mcp.json", {"box": stdio_entry("--name", "box")})
    return clean_env(
        DATABASE_URL=database_url,
        DATA_DIR=str(workdir / "data"),
        BCRYPT_ROUNDS="4",
        LLM_BASE_URL=fake.base_url,
        LLM_MODEL_NAME="fake-model",
        LLM_MAX_RETRIES="0",
        MCP_CONFIG_PATH=str(config),
    )


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


async def stream_lines(
    client: httpx.AsyncClient, owner: Account, content: str
) -> AsyncIterator[str]:
    async with client.stream(
        "POST", f"{API}/chat/stream", json={"content": content}, headers=owner.headers
    ) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            yield line


async def messages(client: httpx.AsyncClient, owner: Account) -> list[dict[str, Any]]:
    sessions = (await client.get(f"{API}/chat/sessions", headers=owner.headers)).json()
    session_id = sessions["items"][0]["id"]
    r = await client.get(f"{API}/chat/sessions/{session_id}/messages", headers=owner.headers)
    return r.json()["items"]


async def test_sigterm_mid_stream_finishes_the_turn_and_ends_the_mcp_children(
    fake_llm: FakeLLMServer, database_url: str, workdir: Path
) -> None:
    """Graceful shutdown: the stream in flight runs to its end and is saved whole; then
    the lifespan stops the MCP client sessions, and the stdio child exits with us."""
    text = "Omzet naik bila Ibu fokus ke pelanggan tetap dan catat semua pengeluaran. " * 2
    server = ServerProcess(server_env(database_url, workdir, fake_llm), workdir)
    with server:
        (child,) = children_of(server.proc.pid)  # the stdio toolbox
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as c:
            owner = await new_account(c)
            fake_llm.script(Reply.of_text(text, chunk_size=6, chunk_delay=0.05))  # ~1.5 s
            raw: list[str] = []
            async for line in stream_lines(c, owner, "Bagaimana menaikkan omzet?"):
                raw.append(line)
                if line.startswith("event: delta") and server.proc.poll() is None:
                    server.proc.send_signal(signal.SIGTERM)  # once the answer is flowing
            events = parse_sse("\n".join(raw) + "\n\n")
            assert [n for n, _ in events][-2:] == ["message", "done"]
            assert events[-2][1]["content"] == text
            # The process exits by itself, cleanly, and takes its MCP child with it.
            # (uvicorn re-raises the signal after its graceful shutdown: status -15.)
            code = await asyncio.to_thread(server.proc.wait, 30)
            assert code in (0, -signal.SIGTERM)
            assert "stopped" in server.logs()  # the lifespan's shutdown ran to its end
            assert not alive(child)
    # The saved conversation, read by the next process on the same database.
    with ServerProcess(server_env(database_url, workdir, fake_llm), workdir) as again:
        async with httpx.AsyncClient(base_url=again.base_url, timeout=30) as c:
            r = await c.post(
                f"{API}/auth/login", json={"email": owner.email, "password": owner.password}
            )
            owner.access_token = r.json()["access_token"]
            items = await messages(c, owner)
    assert [(m["role"], m["status"]) for m in items] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert items[1]["content"] == text


async def test_an_mcp_server_killed_during_a_tool_call_is_an_error_result(
    fake_llm: FakeLLMServer, database_url: str, workdir: Path
) -> None:
    """The toolbox dies while its `slow` tool runs: the call ends as an error result the
    model reads, the turn completes, and the server is reconnected for the next turn."""
    server = ServerProcess(server_env(database_url, workdir, fake_llm), workdir)
    with server:
        (child,) = children_of(server.proc.pid)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as c:
            owner = await new_account(c)
            fake_llm.script(
                Reply.tool_call("slow", {"seconds": 20}),
                Reply.of_text("Maaf, alatnya sedang bermasalah."),
            )
            raw: list[str] = []
            async for line in stream_lines(c, owner, "Cari produk"):
                raw.append(line)
                if line.startswith("event: tool_call"):
                    await asyncio.sleep(0.3)  # the call is in the toolbox now
                    os.kill(child, signal.SIGKILL)
            events = parse_sse("\n".join(raw) + "\n\n")
            result = next(d for n, d in events if n == "tool_result")
            assert result["name"] == "slow" and result["is_error"] is True
            assert [n for n, _ in events][-1] == "done"
            # The model saw the failure and answered.
            last = fake_llm.requests[-1]["messages"][-1]
            assert last["role"] == "tool" and "Error" in last["content"]

            # Reconnected: a new child, and the tools work again.
            for _ in range(100):
                now = children_of(server.proc.pid)
                if now and child not in now:
                    break
                await asyncio.sleep(0.1)
            fake_llm.script(Reply.tool_call("add", {"a": 2, "b": 3}), Reply.of_text("Lima."))
            for _ in range(50):  # until the new session is up
                raw = [line async for line in stream_lines(c, owner, "Dua tambah tiga?")]
                events = parse_sse("\n".join(raw) + "\n\n")
                result = next(d for n, d in events if n == "tool_result")
                if not result["is_error"]:
                    break
                fake_llm.script(Reply.tool_call("add", {"a": 2, "b": 3}), Reply.of_text("Lima."))
                await asyncio.sleep(0.2)
            assert json.loads(result["output"]) == 5 or result["output"].strip() == "5"
