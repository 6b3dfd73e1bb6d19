"""Queries on chat sessions and messages."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Select, cast, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.modules.chat.models import ChatMessage, ChatSession, MessageRole, MessageStatus
from app.modules.users.models import User

# (UTC day, user id, email, prompt tokens, completion tokens, turns)
UsageRow = tuple[date, uuid.UUID, str, int, int, int]


class ChatRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_session(self, user_id: uuid.UUID, session_id: uuid.UUID) -> ChatSession | None:
        """The session if it belongs to `user_id` (someone else's is simply not found)."""
        result = await self.session.execute(
            select(ChatSession).where(ChatSession.id == session_id, ChatSession.user_id == user_id)
        )
        return result.scalar_one_or_none()

    async def list_sessions(
        self, user_id: uuid.UUID, limit: int, offset: int
    ) -> tuple[list[ChatSession], int]:
        where = ChatSession.user_id == user_id
        total = await self.session.scalar(
            select(func.count()).select_from(ChatSession).where(where)
        )
        rows = await self.session.execute(
            select(ChatSession)
            .where(where)
            .order_by(ChatSession.updated_at.desc(), ChatSession.id)  # type: ignore[attr-defined]
            .limit(limit)
            .offset(offset)
        )
        return list(rows.scalars()), total or 0

    async def list_messages(
        self, session_id: uuid.UUID, limit: int, offset: int
    ) -> tuple[list[ChatMessage], int]:
        where = ChatMessage.session_id == session_id
        total = await self.session.scalar(
            select(func.count()).select_from(ChatMessage).where(where)
        )
        rows = await self.session.execute(
            select(ChatMessage)
            .where(where)
            .order_by(ChatMessage.created_at, ChatMessage.id)  # type: ignore[arg-type]
            .limit(limit)
            .offset(offset)
        )
        return list(rows.scalars()), total or 0

    async def last_exchanges(self, session_id: uuid.UUID, count: int) -> list[ChatMessage]:
        """The newest `count` user and assistant messages, failed replies included (what
        the owner saw), oldest first."""
        rows = await self.session.execute(
            select(ChatMessage)
            .where(
                ChatMessage.session_id == session_id,
                ChatMessage.role.in_([MessageRole.USER, MessageRole.ASSISTANT]),  # type: ignore[attr-defined]
            )
            .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())  # type: ignore[attr-defined]
            .limit(count)
        )
        return list(reversed(list(rows.scalars())))

    async def recent_history(self, session_id: uuid.UUID, count: int) -> list[ChatMessage]:
        """The last `count` user/assistant messages with text, oldest first."""
        if count <= 0:
            return []
        return await self._recent(
            select(ChatMessage).where(ChatMessage.session_id == session_id), count
        )

    async def recent_for_user(self, user_id: uuid.UUID, count: int) -> list[ChatMessage]:
        """The user's last `count` user/assistant messages across sessions, oldest first."""
        return await self._recent(
            select(ChatMessage)
            .join(ChatSession, ChatSession.id == ChatMessage.session_id)
            .where(ChatSession.user_id == user_id),
            count,
        )

    async def _recent(self, query: Select[tuple[ChatMessage]], count: int) -> list[ChatMessage]:
        """The conversation's text (user and assistant, no failed replies): the newest
        `count` messages of `query`, oldest first."""
        rows = await self.session.execute(
            query.where(
                ChatMessage.role.in_([MessageRole.USER, MessageRole.ASSISTANT]),  # type: ignore[attr-defined]
                ChatMessage.status != MessageStatus.ERROR,
                ChatMessage.content != "",
            )
            .order_by(ChatMessage.created_at.desc(), ChatMessage.id)  # type: ignore[attr-defined]
            .limit(count)
        )
        return list(reversed(list(rows.scalars())))

    async def previous_turn_tool_calls(
        self, session_id: uuid.UUID, name: str, before: datetime
    ) -> list[dict[str, Any]]:
        """The recorded calls of tool `name` in the turn just before the user message
        written at `before` (after the user message before that one)."""
        previous_user = await self.session.scalar(
            select(func.max(ChatMessage.created_at)).where(
                ChatMessage.session_id == session_id,
                ChatMessage.role == MessageRole.USER,
                ChatMessage.created_at < before,  # type: ignore[operator]
            )
        )
        query = select(ChatMessage.tool_calls).where(
            ChatMessage.session_id == session_id,
            ChatMessage.role == MessageRole.TOOL,
            ChatMessage.created_at < before,  # type: ignore[operator]
        )
        if previous_user is not None:
            query = query.where(ChatMessage.created_at > previous_user)  # type: ignore[operator]
        rows = await self.session.execute(query)
        return [
            call for call in rows.scalars() if isinstance(call, dict) and call.get("name") == name
        ]

    async def delete_session(self, session_id: uuid.UUID, stale_before: datetime) -> bool:
        """Delete the session unless a live stream holds it (one that claimed it after
        `stale_before`); False if it was not deleted (streaming, or already gone)."""
        result = await self.session.execute(
            delete(ChatSession).where(
                ChatSession.id == session_id,
                or_(
                    ChatSession.streaming_since.is_(None),  # type: ignore[union-attr]
                    ChatSession.streaming_since < stale_before,  # type: ignore[operator]
                ),
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        # Messages go with it (ON DELETE CASCADE; deleted explicitly too, for SQLite
        # databases opened without foreign keys).
        await self.session.execute(delete(ChatMessage).where(ChatMessage.session_id == session_id))
        return True

    async def claim_stream(
        self, session_id: uuid.UUID, now: datetime, stale_before: datetime
    ) -> bool:
        """Mark the session as streaming unless a live stream already holds it."""
        result = await self.session.execute(
            update(ChatSession)
            .where(
                ChatSession.id == session_id,
                or_(
                    ChatSession.streaming_since.is_(None),  # type: ignore[union-attr]
                    ChatSession.streaming_since < stale_before,  # type: ignore[operator]
                ),
            )
            .values(streaming_since=now)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def release_stream(self, session_id: uuid.UUID, updated_at: datetime) -> None:
        await self.session.execute(
            update(ChatSession)
            .where(ChatSession.id == session_id)
            .values(streaming_since=None, updated_at=updated_at)
        )

    async def renew_stream(
        self, session_id: uuid.UUID, claimed_at: datetime, now: datetime
    ) -> bool:
        """Move a live claim's time on; False if it is no longer the one taken at
        `claimed_at` (released, lapsed and taken by another turn, or deleted)."""
        result = await self.session.execute(
            update(ChatSession)
            .where(ChatSession.id == session_id, ChatSession.streaming_since == claimed_at)
            .values(streaming_since=now)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]

    # --- token usage (admins) -----------------------------------------------------------

    async def usage_by_day(
        self,
        since: datetime,
        until: datetime,
        user_id: uuid.UUID | None,
        limit: int,
        offset: int,
    ) -> tuple[list[UsageRow], int]:
        """Tokens of the turns in [since, until) that reported usage, summed per UTC day
        and user: newest day first, then the biggest spender; and how many such rows."""
        day = self._utc_day().label("day")
        prompt = func.sum(ChatMessage.prompt_tokens)
        completion = func.sum(func.coalesce(ChatMessage.completion_tokens, 0))
        grouped = (
            self._usage_query(
                since, until, user_id, day, ChatSession.user_id, User.email, prompt, completion
            )
            .join(User, User.id == ChatSession.user_id)  # type: ignore[arg-type]
            .group_by(day, ChatSession.user_id, User.email)
        )
        total = await self.session.scalar(select(func.count()).select_from(grouped.subquery()))
        rows = await self.session.execute(
            grouped.order_by(day.desc(), (prompt + completion).desc(), ChatSession.user_id)
            .limit(limit)
            .offset(offset)
        )
        out: list[UsageRow] = []
        for bucket, owner, email, prompt_sum, completion_sum, turns in rows.all():
            key = bucket if isinstance(bucket, date) else date.fromisoformat(str(bucket)[:10])
            out.append(
                (key, owner, email, int(prompt_sum or 0), int(completion_sum or 0), int(turns))
            )
        return out, total or 0

    async def usage_total(
        self, since: datetime, until: datetime, user_id: uuid.UUID | None
    ) -> tuple[int, int, int]:
        """(prompt tokens, completion tokens, turns) of the turns in [since, until) that
        reported usage."""
        prompt = func.sum(ChatMessage.prompt_tokens)
        completion = func.sum(func.coalesce(ChatMessage.completion_tokens, 0))
        row = (
            await self.session.execute(self._usage_query(since, until, user_id, prompt, completion))
        ).one()
        return int(row[0] or 0), int(row[1] or 0), int(row[2])

    @staticmethod
    def _usage_query(
        since: datetime, until: datetime, user_id: uuid.UUID | None, *columns: Any
    ) -> Select[Any]:
        """`columns` and a count, over the assistant messages with reported usage written
        in [since, until), joined to their sessions (whose `user_id` is the owner)."""
        where = [
            ChatMessage.role == MessageRole.ASSISTANT,
            ChatMessage.prompt_tokens.is_not(None),  # type: ignore[union-attr]
            ChatMessage.created_at >= since,  # type: ignore[operator]
            ChatMessage.created_at < until,  # type: ignore[operator]
        ]
        if user_id is not None:
            where.append(ChatSession.user_id == user_id)
        return (
            select(*columns, func.count())
            .select_from(ChatMessage)
            .join(ChatSession, ChatSession.id == ChatMessage.session_id)
            .where(*where)
        )

    def _utc_day(self) -> Any:
        """The UTC calendar day of a message's `created_at`, computed in the database."""
        column = ChatMessage.created_at
        if self.session.get_bind().dialect.name == "postgresql":
            return cast(func.timezone("UTC", column), Date)
        # SQLite keeps UTC text; cut to whole seconds first, so no rounding of fractions
        # can move 23:59:59.9999 to the next day.
        return func.date(func.strftime("%Y-%m-%d %H:%M:%S", column))
