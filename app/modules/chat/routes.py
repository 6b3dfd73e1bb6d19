"""`/chat`: my sessions and their messages, and the streaming turn (README, "Chat with Reka");
`/admin/llm-usage`: the model's tokens per user and day, for admins."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.api.deps import (
    AdminUser,
    ContextDep,
    CurrentUser,
    SessionDep,
    SettingsDep,
    oauth2_scheme,
)
from app.api.tools import domain_tools, external_tools, tool_context
from app.core.config import Settings
from app.core.errors import Responses, UnauthorizedError
from app.core.llm import LLMNotConfiguredError
from app.core.security import InvalidTokenError
from app.core.tools import Conversation
from app.core.types import Limit, Offset
from app.modules.agent.prompt import build_system_prompt, describe_business
from app.modules.agent.runner import AgentLimits
from app.modules.business.service import BusinessService
from app.modules.chat.schemas import (
    ChatStreamRequest,
    DailyUsagePublic,
    MessagePage,
    MessagePublic,
    SessionPage,
    SessionPublic,
    SessionRename,
    UsageCounts,
    UsageDays,
    UsageReportPublic,
)
from app.modules.chat.service import ChatService, TurnQuota
from app.modules.chat.turn import ChatTurn

router = APIRouter(
    prefix="/chat", tags=["chat"], responses={401: {"description": "Not authenticated"}}
)
admin_router = APIRouter(
    prefix="/admin/llm-usage",
    tags=["admin"],
    responses={401: {"description": "Not authenticated"}, 403: {"description": "Not an admin"}},
)
_404: Responses = {404: {"description": "No such session of yours"}}


async def get_chat_service(session: SessionDep) -> ChatService:
    return ChatService(session)


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]


def stream_claim(settings: Settings) -> timedelta:
    """How long a session's streaming claim holds unrenewed: a running turn renews it
    every third of that, so it lapses that long after its process died."""
    return timedelta(seconds=settings.CHAT_STREAM_CLAIM_SECONDS)


@router.get("/sessions", response_model=SessionPage)
async def list_sessions(
    user: CurrentUser,
    chats: ChatServiceDep,
    limit: Annotated[Limit, Query()] = 20,
    offset: Annotated[Offset, Query()] = 0,
) -> SessionPage:
    """My chat sessions, most recently active first."""
    items, total = await chats.list_sessions(user.id, limit, offset)
    return SessionPage(
        items=[SessionPublic.model_validate(s) for s in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/sessions/{session_id}", response_model=SessionPublic, responses=_404)
async def get_session(
    session_id: uuid.UUID, user: CurrentUser, chats: ChatServiceDep
) -> SessionPublic:
    return SessionPublic.model_validate(await chats.get_session(user.id, session_id))


@router.patch("/sessions/{session_id}", response_model=SessionPublic, responses=_404)
async def rename_session(
    session_id: uuid.UUID, data: SessionRename, user: CurrentUser, chats: ChatServiceDep
) -> SessionPublic:
    return SessionPublic.model_validate(await chats.rename(user.id, session_id, data.title))


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_404, 409: {"description": "The session is streaming"}},
)
async def delete_session(
    session_id: uuid.UUID, user: CurrentUser, chats: ChatServiceDep, settings: SettingsDep
) -> Response:
    """Delete the session with all its messages."""
    await chats.delete(user.id, session_id, stream_claim(settings))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sessions/{session_id}/messages", response_model=MessagePage, responses=_404)
async def list_messages(
    session_id: uuid.UUID,
    user: CurrentUser,
    chats: ChatServiceDep,
    limit: Annotated[Limit, Query()] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> MessagePage:
    """A session's messages, oldest first."""
    items, total = await chats.list_messages(user.id, session_id, limit, offset)
    return MessagePage(
        items=[MessagePublic.model_validate(m) for m in items],
        total=total,
        limit=limit,
        offset=offset,
    )


async def token_issued_at(
    context: ContextDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> datetime:
    """When the caller's access token (already accepted by `CurrentUser`) was issued: the
    turn's tools refuse once the user's sessions are ended after it."""
    try:
        return context.tokens.decode(token or "", "access").issued_at
    except InvalidTokenError:  # expired in the instant since it was accepted
        raise UnauthorizedError() from None


async def start_turn(
    body: ChatStreamRequest,
    app_context: ContextDep,
    user: CurrentUser,
    issued_at: Annotated[datetime, Depends(token_issued_at)],
    chats: ChatServiceDep,
) -> ChatTurn:
    """Everything that can refuse the turn, before the stream starts (so refusals are
    plain JSON errors): no LLM 503, the user's limits 429, someone else's session 404,
    busy session 409."""
    settings, llm, sessionmaker = app_context.settings, app_context.llm, app_context.db.sessionmaker
    if llm is None:
        raise LLMNotConfiguredError()
    # Everything that can fail comes before the session is claimed and the message saved.
    external = external_tools(app_context.mcp)
    business = await BusinessService(chats.session).mine(user.id)
    prompt = build_system_prompt(user.name, business_context=describe_business(business))
    quota = TurnQuota(
        parallel_streams=settings.CHAT_MAX_PARALLEL_STREAMS,
        turns=settings.CHAT_TURNS_PER_WINDOW,
        window_seconds=settings.CHAT_TURN_WINDOW_SECONDS,
    )
    admission = await chats.admit(user.id, quota, sessionmaker)
    try:
        start = await chats.begin_turn(
            user.id,
            body.session_id,
            body.content,
            history_size=settings.CHAT_HISTORY_MESSAGES,
            stream_ttl=stream_claim(settings),
        )
    except BaseException:
        await chats.withdraw(admission)
        raise
    # The request's session lives until the response ends (a yield dependency): close
    # it, so the stream holds no pooled connection while it waits on the model.
    await chats.session.close()
    context = tool_context(
        user.id,
        sessionmaker=sessionmaker,
        hasher=app_context.hasher,
        settings=settings,
        roadmap_worker=app_context.roadmap_worker,
        conversation=Conversation(start.session_id, start.user_message.created_at),
        token_issued_at=issued_at,
    )
    tools = [*domain_tools(context), *external]  # binding the domain tools cannot fail
    return ChatTurn(
        start=start,
        llm=llm,
        tools=tools,
        system_prompt=prompt,
        sessionmaker=sessionmaker,
        limits=AgentLimits(
            max_tool_rounds=settings.CHAT_MAX_TOOL_ROUNDS,
            idle_timeout=settings.LLM_TIMEOUT_SECONDS,
            tool_timeout=settings.LLM_TIMEOUT_SECONDS,
            max_tool_calls=settings.CHAT_MAX_TOOL_CALLS_PER_RESPONSE,
            max_response_chars=settings.CHAT_MAX_RESPONSE_CHARS,
        ),
        deadline_seconds=settings.CHAT_TURN_TIMEOUT_SECONDS,
        history_chars=settings.CHAT_HISTORY_MAX_CHARS,
        lease=admission.lease,
        claim_renew_seconds=settings.CHAT_STREAM_CLAIM_SECONDS / 3,
    )


@router.post(
    "/stream",
    response_class=EventSourceResponse,
    responses={
        **_404,
        200: {
            "description": "Events: session, delta, tool_call, tool_result, message, error, done"
        },
        409: {"description": "The session is already streaming"},
        429: {"description": "Too many answers streaming at once, or messages per window"},
        503: {"description": "No LLM configured, or the service is busy"},
    },
)
async def stream(turn: Annotated[ChatTurn, Depends(start_turn)]) -> AsyncIterator[ServerSentEvent]:
    """Send a message and receive the advisor's reply as Server-Sent Events.

    `session_id: null` starts a new session. The user's message is saved before the
    model is called; the reply is saved when complete, or as partial/error if the turn
    stops early.
    """
    async for event in turn.events():
        yield event


# --- administration ---------------------------------------------------------------------


@admin_router.get("", response_model=UsageReportPublic)
async def llm_usage(
    _admin: AdminUser,
    chats: ChatServiceDep,
    days: Annotated[UsageDays, Query()] = 7,
    user_id: Annotated[uuid.UUID | None, Query(description="Only this user")] = None,
    limit: Annotated[Limit, Query()] = 100,
    offset: Annotated[Offset, Query()] = 0,
) -> UsageReportPublic:
    """The model's tokens per user and UTC day over the last `days` days (today
    included), from the usage the model's server reported with each chat turn (turns
    without it are not counted), and the sums over the whole range."""
    report = await chats.usage_report(days, user_id=user_id, limit=limit, offset=offset)
    return UsageReportPublic(
        start=report.start,
        end=report.end,
        totals=UsageCounts.model_validate(report.totals),
        items=[DailyUsagePublic.model_validate(row) for row in report.items],
        total=report.total,
        limit=limit,
        offset=offset,
    )
