"""The roadmap worker: runs recorded roadmap requests, once each, across restarts.

One per app process (`AppContext.roadmap_worker`). A request is a row in `roadmap_generations`;
the worker claims it with a conditional UPDATE (so of several processes exactly one
runs it), holds a lease it renews before every LLM attempt, and saves the roadmap in the
same transaction that marks the request done — only if it still holds the claim. If the
process dies, the lease runs out and any worker takes the request over; on a clean
shutdown the worker hands its requests back to the queue at once.

It is woken when a request is recorded in this process, and looks for work every
`POLL_SECONDS` as well (requests recorded by other processes, expired leases).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from datetime import timedelta

import structlog
from llama_index.core.llms.function_calling import FunctionCallingLLM
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.errors import is_db_unavailable
from app.db.types import utcnow
from app.modules.milestone.generation import GenerationFailed, draft_roadmap, gather_context
from app.modules.milestone.models import GenerationStatus
from app.modules.milestone.repository import GenerationRepository
from app.modules.milestone.roadmaps import RoadmapRequests

log = structlog.stdlib.get_logger(__name__)

POLL_SECONDS = 2.0
RELEASE_TIMEOUT_SECONDS = 5.0


class ClaimLost(Exception):
    """Another worker took the request over (our lease ran out)."""


class RoadmapWorker:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        llm: FunctionCallingLLM,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.llm = llm
        self.attempt_timeout = settings.ROADMAP_ATTEMPT_TIMEOUT_SECONDS
        self.max_attempts = settings.ROADMAP_MAX_ATTEMPTS
        self.concurrency = settings.ROADMAP_CONCURRENCY
        # A lease outlives one attempt (the LLM call is bounded by attempt_timeout)
        # with room to save; it is renewed before every attempt.
        self.lease = timedelta(seconds=2 * self.attempt_timeout + 5)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}  # claim -> task

    @property
    def longest_run(self) -> float:
        """Seconds a request may take once claimed (every attempt in its lease), plus a
        minute in the queue: how long a progress stream waits for the outcome."""
        return self.max_attempts * self.lease.total_seconds() + 60

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="roadmap-worker")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._running.values()) if t is not None]
        claims = list(self._running)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if claims:  # back to the queue: the next start (or another worker) resumes them
            await self._release(*claims)

    async def _release(self, *claims: uuid.UUID) -> None:
        """Hand requests back to the queue; if the database cannot be reached, their
        leases run out instead."""
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_SECONDS):
                async with self.sessionmaker() as session:
                    await GenerationRepository(session).release(claims)
                    await session.commit()
            log.info("roadmap_requests_released", count=len(claims))
        except Exception:
            log.warning("roadmap_requests_not_released", exc_info=True)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._claim_and_run()
            except Exception:  # the database may be down; look again later
                log.warning("roadmap_worker_poll_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()

    async def _claim_and_run(self) -> None:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return
        now = utcnow()
        async with self.sessionmaker() as session:
            repo = GenerationRepository(session)
            for generation_id in await repo.claimable(now, free):
                claim = uuid.uuid4()
                if await repo.claim(generation_id, claim, now, now + self.lease):
                    await session.commit()
                    task = asyncio.create_task(
                        self._run(generation_id, claim), name=f"roadmap-{generation_id}"
                    )
                    self._running[claim] = task
                    task.add_done_callback(functools.partial(self._finished, claim))
                else:
                    await session.rollback()

    def _finished(self, claim: uuid.UUID, _task: asyncio.Task[None]) -> None:
        self._running.pop(claim, None)
        self._wake.set()  # a slot is free: look for more work

    async def _run(self, generation_id: uuid.UUID, claim: uuid.UUID) -> None:
        log.info("roadmap_generation_started", generation_id=str(generation_id))
        try:
            async with self.sessionmaker() as session:
                generation = await GenerationRepository(session).get(generation_id)
                if generation is None:
                    return
                done_before = generation.attempts
                context = await gather_context(
                    session, generation.business_id, generation.kind, generation.focus
                )
            remaining = self.max_attempts - done_before
            if context is None or remaining <= 0:
                reason = "the business no longer exists" if context is None else "no attempts left"
                raise GenerationFailed(f"Roadmap generation stopped: {reason}")

            async def renew(attempt: int) -> None:
                await self._update(
                    generation_id,
                    claim,
                    attempts=done_before + attempt,
                    stage="thinking",
                    lease_until=utcnow() + self.lease,
                )

            plans = await draft_roadmap(
                self.llm,
                context,
                attempts=remaining,
                attempt_timeout=self.attempt_timeout,
                on_attempt=renew,
            )
            await self._update(generation_id, claim, stage="saving")
            async with self.sessionmaker() as session:
                requests = RoadmapRequests.for_settings(session, self.settings, self)
                saved = await requests.save_generated(generation_id, claim, plans)
            if saved is None:
                raise ClaimLost
            log.info(
                "roadmap_generation_finished",
                generation_id=str(generation_id),
                milestones=len(saved),
            )
        except ClaimLost:
            log.warning("roadmap_generation_taken_over", generation_id=str(generation_id))
        except GenerationFailed as exc:
            log.warning("roadmap_generation_failed", generation_id=str(generation_id))
            await self._fail(generation_id, claim, str(exc))
        except Exception as exc:
            if is_db_unavailable(exc):  # not the request's fault: hand it back, retry later
                log.warning("roadmap_generation_interrupted", generation_id=str(generation_id))
                await self._release(claim)
                return
            log.exception("roadmap_generation_crashed", generation_id=str(generation_id))
            await self._fail(generation_id, claim, "Roadmap generation failed unexpectedly")

    async def _update(self, generation_id: uuid.UUID, claim: uuid.UUID, **values: object) -> None:
        async with self.sessionmaker() as session:
            if not await GenerationRepository(session).update_claimed(
                generation_id, claim, **values
            ):
                raise ClaimLost
            await session.commit()

    async def _fail(self, generation_id: uuid.UUID, claim: uuid.UUID, message: str) -> None:
        with contextlib.suppress(Exception):  # if this fails too, the lease will expire
            await self._update(
                generation_id,
                claim,
                status=GenerationStatus.FAILED,
                stage="done",
                error=message[:1000],
                finished_at=utcnow(),
            )
