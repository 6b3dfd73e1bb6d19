"""Queries on chat sessions and messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.modules.chat.models import ChatMessage, ChatSession, MessageRole, MessageStatus


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
