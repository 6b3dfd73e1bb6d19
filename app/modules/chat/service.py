"""Chat rules: sessions belong to one user, one stream per session at a time, a few
streams and a bounded number of turns per user, and the user's message is saved before
the LLM is called. Admins see the model's token usage per user and UTC day."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import ConflictError, NotFoundError
from app.db.helpers import commit_or_conflict
from app.db.types import utcnow
from app.modules.chat.models import ChatMessage, ChatSession, MessageRole
from app.modules.chat.repository import ChatRepository
from app.modules.limits.service import LimitService, SlotLease, Window

log = structlog.stdlib.get_logger(__name__)

TITLE_CHARS = 60
STREAM_BUSY = "This chat session is already answering a message; wait for it to finish."
SESSION_NOT_FOUND = "Chat session not found"
SESSION_CHANGED = "The chat session was changed meanwhile; reload it and retry"
MAX_USAGE_DAYS = 90


@dataclass(frozen=True)
class TurnQuota:
    """A user's chat limits: streams at once, and turns per sliding window."""

    parallel_streams: int
    turns: int
    window_seconds: int


@dataclass(frozen=True)
class Admission:
    """A turn let through the user's limits: a stream place held, the turn counted."""

    lease: SlotLease
    counted: list[uuid.UUID]


@dataclass(frozen=True)
class TurnStart:
    """A turn that may stream: the session is claimed and the user's message is saved."""

    session_id: uuid.UUID
    title: str
    created: bool
    history: list[ChatMessage]
    user_message: ChatMessage
    claimed_at: datetime  # the claim's `streaming_since`, which its heartbeat renews


@dataclass(frozen=True)
class UsageTotal:
    prompt_tokens: int
    completion_tokens: int
    turns: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, kw_only=True)
class DailyUsage(UsageTotal):
    """One user's tokens on one UTC day, over their turns that reported usage."""

    date: dt.date
    user_id: uuid.UUID
    email: str


@dataclass(frozen=True)
class UsageReport:
    """A page of `DailyUsage` rows for the UTC days `start`..`end` (both included), and
    the sums over all of them."""

    start: dt.date
    end: dt.date
    totals: UsageTotal
    items: list[DailyUsage]
    total: int


def title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class ChatService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = ChatRepository(session)

    async def recent_messages(self, user_id: uuid.UUID, count: int) -> list[ChatMessage]:
        """The user's last `count` user/assistant messages across sessions, oldest first."""
        return await self.repo.recent_for_user(user_id, count)

    async def previous_turn_tool_calls(
        self, session_id: uuid.UUID, name: str, before: datetime
    ) -> list[dict[str, Any]]:
        """The recorded calls of tool `name` in the turn just before the user message
        written at `before`."""
        return await self.repo.previous_turn_tool_calls(session_id, name, before)

    async def get_session(self, user_id: uuid.UUID, session_id: uuid.UUID) -> ChatSession:
        chat = await self.repo.get_session(user_id, session_id)
        if chat is None:
            raise NotFoundError(SESSION_NOT_FOUND)
        return chat

    async def list_sessions(
        self, user_id: uuid.UUID, limit: int, offset: int
    ) -> tuple[list[ChatSession], int]:
        return await self.repo.list_sessions(user_id, limit, offset)

    async def rename(self, user_id: uuid.UUID, session_id: uuid.UUID, title: str) -> ChatSession:
        chat = await self.get_session(user_id, session_id)
        chat.title = title
        chat.updated_at = utcnow()
        # Deleted by a parallel request since we read it: it is gone, 404.
        await commit_or_conflict(self.session, SESSION_CHANGED, not_found=SESSION_NOT_FOUND)
        return chat

    async def delete(
        self, user_id: uuid.UUID, session_id: uuid.UUID, stream_ttl: timedelta
    ) -> None:
        """Delete the session and its messages, unless a live stream holds it (409).

        One conditional statement decides, so a stream claimed at this very moment keeps
        its session, and of two parallel deletes one finds nothing (404)."""
        chat = await self.get_session(user_id, session_id)
        if not await self.repo.delete_session(chat.id, utcnow() - stream_ttl):
            await self.session.rollback()
            if await self.repo.get_session(user_id, session_id) is None:
                raise NotFoundError(SESSION_NOT_FOUND)
            raise ConflictError(STREAM_BUSY)
        await self.session.commit()

    async def list_messages(
        self, user_id: uuid.UUID, session_id: uuid.UUID, limit: int, offset: int
    ) -> tuple[list[ChatMessage], int]:
        chat = await self.get_session(user_id, session_id)
        return await self.repo.list_messages(chat.id, limit, offset)

    async def conversation(
        self, user_id: uuid.UUID, session_id: uuid.UUID, limit: int
    ) -> list[ChatMessage]:
        """The session's last `limit` user and assistant messages, oldest first (tool
        rows left out): the conversation as the owner saw it."""
        chat = await self.get_session(user_id, session_id)
        return await self.repo.last_exchanges(chat.id, limit)

    async def usage_report(
        self,
        days: int,
        *,
        user_id: uuid.UUID | None = None,
        limit: int = 100,
        offset: int = 0,
        today: dt.date | None = None,
    ) -> UsageReport:
        """The model's tokens per user and UTC day over the last `days` days (today
        included), for admins. Only turns whose server reported usage count: a turn
        without it has no tokens to add, and is not counted in `turns` either."""
        if not 1 <= days <= MAX_USAGE_DAYS:
            raise ValueError(f"days must be 1 to {MAX_USAGE_DAYS}")
        end = today or utcnow().date()
        start = end - timedelta(days=days - 1)
        since = datetime.combine(start, dt.time(), UTC)
        until = datetime.combine(end + timedelta(days=1), dt.time(), UTC)
        rows, total = await self.repo.usage_by_day(since, until, user_id, limit, offset)
        prompt, completion, turns = await self.repo.usage_total(since, until, user_id)
        return UsageReport(
            start=start,
            end=end,
            totals=UsageTotal(prompt, completion, turns),
            items=[
                DailyUsage(
                    date=day,
                    user_id=owner,
                    email=email,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    turns=count,
                )
                for day, owner, email, prompt_tokens, completion_tokens, count in rows
            ],
            total=total,
        )

    async def begin_turn(
        self,
        user_id: uuid.UUID,
        session_id: uuid.UUID | None,
        content: str,
        *,
        history_size: int,
        stream_ttl: timedelta,
    ) -> TurnStart:
        """Claim (or create) the session for streaming and save the user's message.

        Raises 404 for a session that is not the user's and 409 while another stream
        runs in it. Everything is committed before this returns, so the LLM is only
        ever called for a message that is already in the history.
        """
        now = utcnow()
        if session_id is None:
            chat = ChatSession(user_id=user_id, title=title_from(content), streaming_since=now)
            self.session.add(chat)
            await self.session.flush()
            created, history = True, []
        else:
            chat = await self.get_session(user_id, session_id)
            if not await self.repo.claim_stream(chat.id, now, now - stream_ttl):
                await self.session.rollback()
                if await self.repo.get_session(user_id, session_id) is None:
                    raise NotFoundError(SESSION_NOT_FOUND)  # deleted meanwhile
                raise ConflictError(STREAM_BUSY)
            created = False
            history = await self.repo.recent_history(chat.id, history_size)
        message = ChatMessage(
            session_id=chat.id, role=MessageRole.USER, content=content, created_at=now
        )
        self.session.add(message)
        chat_id, title = chat.id, chat.title
        await self.session.commit()
        return TurnStart(chat_id, title, created, history, message, now)

    async def admit(
        self,
        user_id: uuid.UUID,
        quota: TurnQuota,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> Admission:
        """Let a turn through the user's limits, or 429 with Retry-After: one of their
        `parallel_streams` places (held by the returned lease while the answer streams,
        lapsing 30 s after a crash), and one of `turns` per window (each turn costs model
        calls). Both are counted in the database, so every worker agrees."""
        limits = LimitService(self.session)
        holder = await limits.take_slot(
            f"chat:{user_id}",
            quota.parallel_streams,
            refusal=f"You already have {quota.parallel_streams} answers streaming at once; "
            "wait for one to finish.",
        )
        lease = SlotLease(sessionmaker, holder)
        try:
            counted = await limits.reserve(
                Window(f"chat-turn:{user_id}", quota.turns, quota.window_seconds),
                refusal=f"You can send at most {quota.turns} messages to the advisor in "
                f"{_span(quota.window_seconds)}; please try again later.",
            )
        except BaseException:
            await lease.release()
            raise
        return Admission(lease, counted)

    async def withdraw(self, admission: Admission) -> None:
        """A turn admitted but refused afterwards (404, 409): free its place and do not
        count it. Never raises, so the refusal is what the caller sees (if the database
        is away, the place lapses by itself and the turn stays counted)."""
        await admission.lease.release()
        try:
            await self.session.rollback()
            await LimitService(self.session).forget(admission.counted)
            await self.session.commit()
        except Exception:
            log.warning("chat_turn_not_uncounted", exc_info=True)


def _span(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "an hour" if hours == 1 else f"{hours} hours"
    if seconds % 60 == 0:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"
