"""One streamed chat turn: agent events -> SSE events (README, "Chat with Reka") + history.

Runs inside the response stream, so it holds no database session of its own between
writes: it opens a short one to save the outcome. Whatever ends the turn — the answer,
an LLM failure, the turn deadline, or the client going away — the assistant's message
is saved (complete, partial or error) together with the tool messages and the tokens
the turn's model responses used (where the server reported them; spent tokens are
spent, so failed turns keep theirs too), and the session's streaming claim is released.
While the turn runs, a heartbeat renews the claim (and the lease keeps the user's
stream place), so both lapse soon after a crash.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import structlog
from fastapi.sse import ServerSentEvent
from llama_index.core.llms import ChatMessage as LLMMessage
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import AsyncBaseTool
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.background import repeating
from app.core.llm_stream import TokenUsage
from app.db.types import utcnow
from app.modules.agent.runner import (
    AgentError,
    AgentLimits,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    UsageReported,
    run_agent,
)
from app.modules.chat.models import MAX_TOKEN_COUNT, ChatMessage, MessageRole, MessageStatus
from app.modules.chat.repository import ChatRepository
from app.modules.chat.service import TurnStart
from app.modules.limits.service import SlotLease

log = structlog.stdlib.get_logger(__name__)

SAVE_TIMEOUT_SECONDS = 10


def sse(event: str, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(event=event, data=data)


@dataclass
class ChatTurn:
    start: TurnStart
    llm: FunctionCallingLLM
    tools: Sequence[AsyncBaseTool]
    system_prompt: str
    sessionmaker: async_sessionmaker[AsyncSession]
    limits: AgentLimits
    deadline_seconds: float
    history_chars: int = 24_000
    # The user's stream place (`ChatService.admit`), held while the turn streams.
    lease: SlotLease | None = None
    # How often the session's streaming claim is renewed: a third of its time to live
    # (CHAT_STREAM_CLAIM_SECONDS), so a live turn never loses it to one slow renewal.
    claim_renew_seconds: float = 10.0
    _text: list[str] = field(default_factory=list)
    _calls: list[tuple[ToolCallFinished, datetime]] = field(default_factory=list)
    # The tokens of the turn's model responses so far; None while no server reported any.
    _usage: TokenUsage | None = None
    _saved: bool = False
    _claimed_at: datetime | None = None

    def _llm_messages(self) -> list[LLMMessage]:
        """System prompt, as much recent history as `history_chars` allows (newest kept),
        and the new message: a long conversation never outgrows the model's context."""
        kept: list[LLMMessage] = []
        budget = self.history_chars
        for message in reversed(self.start.history):
            budget -= len(message.content)
            if budget < 0:
                break
            kept.append(LLMMessage(role=message.role, content=message.content))
        return [
            LLMMessage(role="system", content=self.system_prompt),
            *reversed(kept),
            LLMMessage(role="user", content=self.start.user_message.content),
        ]

    async def events(self) -> AsyncGenerator[ServerSentEvent, None]:
        """The turn's events; the stream place and the session's claim are kept alive
        (renewed in short sessions of their own) until it ends."""
        async with (
            self.lease.held() if self.lease is not None else nullcontext(),
            repeating(self.claim_renew_seconds, self._renew_claim, name="chat-stream-claim"),
            aclosing(self._events()) as events,
        ):
            async for event in events:
                yield event

    async def _renew_claim(self) -> None:
        now = utcnow()
        async with self.sessionmaker() as session:
            renewed = await ChatRepository(session).renew_stream(
                self.start.session_id, self._claimed_at or self.start.claimed_at, now
            )
            await session.commit()
        if renewed:
            self._claimed_at = now
        elif not self._saved:
            log.warning("chat_stream_claim_lost", session_id=str(self.start.session_id))

    async def _events(self) -> AsyncGenerator[ServerSentEvent, None]:
        start = self.start
        yield sse(
            "session",
            {"session_id": str(start.session_id), "title": start.title, "created": start.created},
        )
        deadline = time.monotonic() + self.deadline_seconds
        try:
            try:
                async for event in run_agent(
                    self.llm, self.tools, self._llm_messages(), self.limits
                ):
                    if isinstance(event, TextDelta):
                        self._text.append(event.text)
                        yield sse("delta", {"text": event.text})
                    elif isinstance(event, ToolCallStarted):
                        yield sse(
                            "tool_call",
                            {"id": event.id, "name": event.name, "arguments": event.arguments},
                        )
                    elif isinstance(event, ToolCallFinished):
                        self._calls.append((event, utcnow()))
                        yield sse(
                            "tool_result",
                            {
                                "id": event.id,
                                "name": event.name,
                                "output": event.output,
                                "is_error": event.is_error,
                            },
                        )
                    elif isinstance(event, UsageReported):
                        self._usage = (
                            event.usage if self._usage is None else self._usage + event.usage
                        )
                    if time.monotonic() > deadline:
                        raise AgentError(
                            "turn_timeout",
                            f"The answer took longer than {self.deadline_seconds:g} s "
                            "and was stopped.",
                        )
            except AgentError as exc:
                log.warning("chat_turn_failed", code=exc.code, session_id=str(start.session_id))
                await self._save(
                    MessageStatus.PARTIAL if self._text else MessageStatus.ERROR, exc.code
                )
                yield sse("error", {"code": exc.code, "message": exc.message})
                return
            message_id = await self._save(MessageStatus.COMPLETE, None)
            if message_id is None:
                yield sse(
                    "error",
                    {
                        "code": "save_failed",
                        "message": "The reply could not be saved; please retry.",
                    },
                )
                return
            yield sse(
                "message",
                {"message_id": str(message_id), "content": storable_text("".join(self._text))},
            )
            yield sse("done", {})
        except Exception:
            log.exception("chat_turn_crashed", session_id=str(start.session_id))
            await self._save(
                MessageStatus.PARTIAL if self._text else MessageStatus.ERROR, "internal_error"
            )
            yield sse(
                "error", {"code": "internal_error", "message": "Something went wrong on our side."}
            )
        finally:
            if not self._saved:  # the client went away (or we were cancelled) mid-turn
                log.info("chat_turn_interrupted", session_id=str(start.session_id))
                with anyio.CancelScope(shield=True):
                    await self._save(MessageStatus.PARTIAL, "client_disconnected")

    async def _save(self, status: MessageStatus, error_code: str | None) -> uuid.UUID | None:
        """Write the tool messages and the assistant's message; release the session.

        Model and tool output is made storable first (no NUL, no lone surrogates, no
        NaN): it comes from outside and PostgreSQL or SQLite would refuse it. If the
        write still fails, the session is released on its own so it is not stuck.
        """
        if self._saved:
            return None
        self._saved = True
        now = utcnow()
        usage = self._usage
        assistant = ChatMessage(
            session_id=self.start.session_id,
            role=MessageRole.ASSISTANT,
            content=storable_text("".join(self._text)),
            tool_calls=storable_json(
                [{"id": c.id, "name": c.name, "arguments": c.arguments} for c, _ in self._calls]
            )
            or None,
            status=status,
            error_code=error_code,
            prompt_tokens=None if usage is None else min(usage.prompt_tokens, MAX_TOKEN_COUNT),
            completion_tokens=(
                None if usage is None else min(usage.completion_tokens, MAX_TOKEN_COUNT)
            ),
            created_at=now,
        )
        tool_rows = [
            ChatMessage(
                session_id=self.start.session_id,
                role=MessageRole.TOOL,
                content=storable_text(call.output),
                tool_calls=storable_json(
                    {
                        "id": call.id,
                        "name": call.name,
                        "arguments": call.arguments,
                        "is_error": call.is_error,
                    }
                ),
                created_at=finished_at,
            )
            for call, finished_at in self._calls
        ]
        try:
            with anyio.fail_after(SAVE_TIMEOUT_SECONDS, shield=True):
                async with self.sessionmaker() as session:
                    session.add_all([*tool_rows, assistant])
                    await ChatRepository(session).release_stream(self.start.session_id, now)
                    await session.commit()
        except Exception:
            log.exception("chat_turn_not_saved", session_id=str(self.start.session_id))
            try:
                with anyio.fail_after(SAVE_TIMEOUT_SECONDS, shield=True):
                    async with self.sessionmaker() as session:
                        await ChatRepository(session).release_stream(self.start.session_id, now)
                        await session.commit()
            except Exception:  # the database is gone: the claim lapses by itself
                log.warning("chat_session_not_released", session_id=str(self.start.session_id))
            return None
        return assistant.id


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def storable_text(text: str) -> str:
    """Text any database keeps: NUL removed, surrogate pairs joined into their character
    (a model may stream an emoji in two halves), lone surrogates replaced."""
    joined = _SURROGATE_PAIR.sub(
        lambda m: m.group().encode("utf-16", "surrogatepass").decode("utf-16"), text
    )
    return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", joined)


def storable_json(value: Any) -> Any:
    """JSON any database keeps: storable strings, and no NaN or infinities."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {storable_text(str(k)): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value
