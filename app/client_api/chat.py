"""Chat calls of the web client (#29-#31): per user, no business needed.

The stream is the same chat turn as `POST /chat/stream` (history, tools, partial saves,
error codes, one stream per session), framed the way the client reads it: each frame
one `data: {json}` line, written whole in one write, with a `type` the client switches
on. The client splits every network chunk into lines and does not join a line cut
between two chunks, so frames stay small and never hold a raw newline.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from app.api.deps import CurrentUser
from app.client_api.errors import ClientError
from app.core.errors import Responses
from app.modules.chat.models import MessageRole
from app.modules.chat.routes import ChatServiceDep, start_turn
from app.modules.chat.turn import ChatTurn

router = APIRouter(prefix="/chat")

SESSIONS_SHOWN = 100  # the sidebar's length
MESSAGES_SHOWN = 100  # the newest of a session's history
# In-stream errors are not shown by the client (it shows its own failure text).
STREAM_FAILED = "The advisor could not finish this answer. Please try again."
# How long the stream stays open after its last frame. The client ends a reply by
# resetting its state when the body ends; if the end arrives in the same read as the
# last frames, that reset lands in the same React render as their text, and the owner
# sees the reply cut short (seen in Chromium with a fast model). A pause lets the text be
# drawn first.
END_PAUSE_SECONDS = 0.3


class ClientSession(BaseModel):
    id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime


class ClientMessage(BaseModel):
    id: uuid.UUID
    role: MessageRole
    content: str
    created_at: datetime


_404: Responses = {404: {"model": ClientError, "description": "No such session of yours"}}


@router.get("/sessions", response_model=list[ClientSession])
async def client_sessions(user: CurrentUser, chats: ChatServiceDep) -> list[ClientSession]:
    """My sessions, most recently active first."""
    sessions, _ = await chats.list_sessions(user.id, SESSIONS_SHOWN, 0)
    return [ClientSession.model_validate(s, from_attributes=True) for s in sessions]


@router.get("/sessions/{session_id}", response_model=list[ClientMessage], responses=_404)
async def client_session_messages(
    session_id: uuid.UUID, user: CurrentUser, chats: ChatServiceDep
) -> list[ClientMessage]:
    """The conversation, oldest first: the owner's and the advisor's messages (the
    newest 100), without the tool calls in between."""
    messages = await chats.conversation(user.id, session_id, MESSAGES_SHOWN)
    return [ClientMessage.model_validate(m, from_attributes=True) for m in messages]


def frame(type_: str, **fields: Any) -> ServerSentEvent:
    """One frame: `data: {"type": ..., ...}` as compact ASCII JSON: no raw newline, and a
    model's emoji split between two deltas (half a surrogate pair in each) travels
    escaped, to be joined again in the client's string."""
    return ServerSentEvent(raw_data=json.dumps({"type": type_, **fields}, separators=(",", ":")))


def client_frame(event: ServerSentEvent) -> ServerSentEvent | None:
    """Our chat event as the client's frame, or None for what it has no use for."""
    data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    match event.event:
        case "session" if data.get("created"):
            return frame("session_created", message=data["title"], data=data["session_id"])
        case "delta":
            return frame("token", data={"text": data["text"]})
        case "tool_call":
            return frame("tool_start", data={"name": data["name"]})
        case "tool_result":
            return frame("tool_end", data={"name": data["name"], "ok": not data["is_error"]})
        case "error":
            return frame("error", code=data["code"], message=STREAM_FAILED)
    return None  # session of an existing chat, message (too large to be sure), done


@router.post(
    "/completion",
    response_class=EventSourceResponse,
    responses={
        **_404,
        200: {
            "description": "Frames: session_created (a new chat), token, tool_start, "
            "tool_end, error; the end of the answer closes the connection"
        },
        409: {"model": ClientError, "description": "The session is already answering"},
        429: {
            "model": ClientError,
            "description": "Too many answers streaming at once, or messages per window",
        },
        503: {"model": ClientError, "description": "No AI model configured, or busy"},
    },
)
async def client_chat_completion(
    turn: Annotated[ChatTurn, Depends(start_turn)],
) -> AsyncIterator[ServerSentEvent]:
    """Send a message (`session_id` left out for a new chat) and stream the answer.
    Refusals come before the stream, as JSON errors."""
    async with aclosing(turn.events()) as events:
        async for event in events:
            if (out := client_frame(event)) is not None:
                yield out
    await asyncio.sleep(END_PAUSE_SECONDS)
