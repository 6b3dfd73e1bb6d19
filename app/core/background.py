"""Small helpers for work that runs beside a request or a stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import structlog

log = structlog.stdlib.get_logger(__name__)


class Worker(Protocol):
    """A background worker as the code that records its work sees it: told when there is
    some (the roadmap worker; a process that runs none passes None or a stand-in)."""

    def wake(self) -> None: ...


@asynccontextmanager
async def repeating(
    interval: float, beat: Callable[[], Awaitable[object]], *, name: str
) -> AsyncIterator[None]:
    """Call `beat` every `interval` seconds while the body runs (first call after one
    interval). A failing beat is logged and tried again next time: a heartbeat that
    misses one round must not end what it keeps alive."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                async with asyncio.timeout(interval):  # a hung beat must not stop the next
                    await beat()
            except Exception:
                log.warning("heartbeat_failed", heartbeat=name, exc_info=True)

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
