"""Queries on chat sessions and messages."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Select, cast, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.helpers import rows_touched
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
            select(ChatSession).where(
                col(ChatSession.id) == session_id, col(ChatSession.user_id) == user_id
            )
        )
        return result.scalar_one_or_none()

    async def list_sessions(
        self, user_id: uuid.UUID, limit: int, offset: int
    ) -> tuple[list[ChatSession], int]:
        where = col(ChatSession.user_id) == user_id
        total = await self.session.scalar(
            select(func.count()).select_from(ChatSession).where(where)
        )
        rows = await self.session.execute(
            select(ChatSession)
            .where(where)
            .order_by(col(ChatSession.updated_at).desc(), col(ChatSession.id))
            .limit(limit)
            .offset(offset)
        )
        return list(rows.scalars()), total or 0

    async def list_messages(
        self, session_id: uuid.UUID, limit: int, offset: int
    ) -> tuple[list[ChatMessage], int]:
        where = col(ChatMessage.session_id) == session_id
        total = await self.session.scalar(
            select(func.count()).select_from(ChatMessage).where(where)
        )
        rows = await self.session.execute(
            select(ChatMessage)
            .where(where)
            .order_by(col(ChatMessage.created_at), col(ChatMessage.id))
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
                col(ChatMessage.session_id) == session_id,
                col(ChatMessage.role).in_([MessageRole.USER, MessageRole.ASSISTANT]),
            )
            .order_by(col(ChatMessage.created_at).desc(), col(ChatMessage.id).desc())
            .limit(count)
        )
        return list(reversed(list(rows.scalars())))

    async def recent_history(self, session_id: uuid.UUID, count: int) -> list[ChatMessage]:
        """The last `count` user/assistant messages with text, oldest first."""
        if count <= 0:
            return []
        return await self._recent(
            select(ChatMessage).where(col(ChatMessage.session_id) == session_id), count
        )

    async def recent_for_user(self, user_id: uuid.UUID, count: int) -> list[ChatMessage]:
        """The user's last `count` user/assistant messages across sessions, oldest first."""
        return await self._recent(
            select(ChatMessage)
            .join(ChatSession, col(ChatSession.id) == col(ChatMessage.session_id))
            .where(col(ChatSession.user_id) == user_id),
            count,
        )

    async def _recent(self, query: Select[ChatMessage], count: int) -> list[ChatMessage]:
        """The conversation's text (user and assistant, no failed replies): the newest
        `count` messages of `query`, oldest first."""
        rows = await self.session.execute(
            query.where(
                col(ChatMessage.role).in_([MessageRole.USER, MessageRole.ASSISTANT]),
                col(ChatMessage.status) != MessageStatus.ERROR,
                col(ChatMessage.content) != "",
            )
            .order_by(col(ChatMessage.created_at).desc(), col(ChatMessage.id))
            .limit(count)
        )
        return list(reversed(list(rows.scalars())))

    async def previous_turn_tool_calls(
        self, session_id: uuid.UUID, name: str, before: datetime
    ) -> list[dict[str, Any]]:
        """The recorded calls of tool `name` in the turn just before the user message
        written at `before` (after the user message before that one)."""
        previous_user = await self.session.scalar(
            select(func.max(col(ChatMessage.created_at))).where(
                col(ChatMessage.session_id) == session_id,
                col(ChatMessage.role) == MessageRole.USER,
                col(ChatMessage.created_at) < before,
            )
        )
        query = select(col(ChatMessage.tool_calls)).where(
            col(ChatMessage.session_id) == session_id,
            col(ChatMessage.role) == MessageRole.TOOL,
            col(ChatMessage.created_at) < before,
        )
        if previous_user is not None:
            query = query.where(col(ChatMessage.created_at) > previous_user)
        rows = await self.session.execute(query)
        return [
            call for call in rows.scalars() if isinstance(call, dict) and call.get("name") == name
        ]

    async def delete_session(self, session_id: uuid.UUID, stale_before: datetime) -> bool:
        """Delete the session unless a live stream holds it (one that claimed it after
        `stale_before`); False if it was not deleted (streaming, or already gone)."""
        result = await self.session.execute(
            delete(ChatSession).where(
                col(ChatSession.id) == session_id,
                or_(
                    col(ChatSession.streaming_since).is_(None),
                    col(ChatSession.streaming_since) < stale_before,
                ),
            )
        )
        if rows_touched(result) != 1:
            return False
        # Messages go with it (ON DELETE CASCADE; deleted explicitly too, for SQLite
        # databases opened without foreign keys).
        await self.session.execute(
            delete(ChatMessage).where(col(ChatMessage.session_id) == session_id)
        )
        return True

    async def claim_stream(
        self, session_id: uuid.UUID, now: datetime, stale_before: datetime
    ) -> bool:
        """Mark the session as streaming unless a live stream already holds it."""
        result = await self.session.execute(
            update(ChatSession)
            .where(
                col(ChatSession.id) == session_id,
                or_(
                    col(ChatSession.streaming_since).is_(None),
                    col(ChatSession.streaming_since) < stale_before,
                ),
            )
            .values(streaming_since=now)
        )
        return rows_touched(result) == 1

    async def release_stream(self, session_id: uuid.UUID, updated_at: datetime) -> None:
        await self.session.execute(
            update(ChatSession)
            .where(col(ChatSession.id) == session_id)
            .values(streaming_since=None, updated_at=updated_at)
        )

    async def renew_stream(
        self, session_id: uuid.UUID, claimed_at: datetime, now: datetime
    ) -> bool:
        """Move a live claim's time on; False if it is no longer the one taken at
        `claimed_at` (released, lapsed and taken by another turn, or deleted)."""
        result = await self.session.execute(
            update(ChatSession)
            .where(
                col(ChatSession.id) == session_id,
                col(ChatSession.streaming_since) == claimed_at,
            )
            .values(streaming_since=now)
        )
        return rows_touched(result) == 1

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
        prompt = func.sum(col(ChatMessage.prompt_tokens))
        completion = func.sum(func.coalesce(col(ChatMessage.completion_tokens), 0))
        grouped = (
            self._usage_query(
                since,
                until,
                user_id,
                day,
                col(ChatSession.user_id),
                col(User.email),
                prompt,
                completion,
            )
            .join(User, col(User.id) == col(ChatSession.user_id))
            .group_by(day, col(ChatSession.user_id), col(User.email))
        )
        total = await self.session.scalar(select(func.count()).select_from(grouped.subquery()))
        rows = await self.session.execute(
            grouped.order_by(day.desc(), (prompt + completion).desc(), col(ChatSession.user_id))
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
        prompt = func.sum(col(ChatMessage.prompt_tokens))
        completion = func.sum(func.coalesce(col(ChatMessage.completion_tokens), 0))
        row = (
            await self.session.execute(self._usage_query(since, until, user_id, prompt, completion))
        ).one()
        return int(row[0] or 0), int(row[1] or 0), int(row[2])

    @staticmethod
    def _usage_query(
        since: datetime, until: datetime, user_id: uuid.UUID | None, *columns: Any
    ) -> Select[*tuple[Any, ...]]:
        """`columns` and a count, over the assistant messages with reported usage written
        in [since, until), joined to their sessions (whose `user_id` is the owner)."""
        where = [
            col(ChatMessage.role) == MessageRole.ASSISTANT,
            col(ChatMessage.prompt_tokens).is_not(None),
            col(ChatMessage.created_at) >= since,
            col(ChatMessage.created_at) < until,
        ]
        if user_id is not None:
            where.append(col(ChatSession.user_id) == user_id)
        return (
            select(*columns, func.count())
            .select_from(ChatMessage)
            .join(ChatSession, col(ChatSession.id) == col(ChatMessage.session_id))
            .where(*where)
        )

    def _utc_day(self) -> Any:
        """The UTC calendar day of a message's `created_at`, computed in the database."""
        column = col(ChatMessage.created_at)
        if self.session.get_bind().dialect.name == "postgresql":
            return cast(func.timezone("UTC", column), Date)
        # SQLite keeps UTC text; cut to whole seconds first, so no rounding of fractions
        # can move 23:59:59.9999 to the next day.
        return func.date(func.strftime("%Y-%m-%d %H:%M:%S", column))
