"""Reka's function-calling loop on a llama_index `FunctionCallingLLM`.

The loop llama_index's `FunctionAgent` runs (stream a chat-with-tools response, collect
its tool calls, run the tools, feed the results back, repeat), written out here so that
each step maps one-to-one onto the chat stream's events and every failure has a code:

- text deltas are yielded as the LLM streams them;
- every tool call is yielded before it runs and its result after; a tool that raises,
  times out, is unknown, or gets arguments its schema rejects becomes an error *result*
  the LLM sees and can recover from;
- an LLM that times out, stalls, rate-limits, fails, or sends tool-call arguments that are
  not JSON ends the turn with `AgentError(code, message)`;
- a response is bounded as it streams: past `max_response_chars` characters (text and
  tool-call arguments) or far past `max_tool_calls` calls it ends the turn, and the
  provider's stream is closed rather than read on; of the calls a complete response
  makes, those beyond `max_tool_calls` are not run and get an error result the model
  reads;
- the stream itself is read by `app.core.llm` (`CompatibleLLM`), which tolerates the
  providers' documented differences and reports token usage (`UsageReported`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import structlog
from llama_index.core.base.llms.types import ChatResponse, ToolCallBlock
from llama_index.core.llms import ChatMessage
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import AsyncBaseTool
from pydantic import ValidationError

from app.core.errors import validation_problems
from app.core.jsonlimits import TOO_DEEP_MESSAGE, cap_json_depth, too_deep
from app.core.llm import USAGE_KEY
from app.core.llm_stream import TokenUsage

log = structlog.stdlib.get_logger(__name__)

MAX_TOOL_OUTPUT_CHARS = 20_000


class AgentError(Exception):
    """The turn cannot go on; `code` is stable for clients, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolCallFinished:
    id: str
    name: str
    arguments: dict[str, Any]
    output: str
    is_error: bool


@dataclass(frozen=True)
class TurnFinished:
    text: str


@dataclass(frozen=True)
class UsageReported:
    """Tokens one model response used, as the server counted them."""

    usage: TokenUsage


AgentEvent = TextDelta | ToolCallStarted | ToolCallFinished | TurnFinished | UsageReported


# A response that streams this many times more calls than may run is cut off as it
# streams (a model gone wrong, or a hostile endpoint), not answered call by call.
STREAMED_TOOL_CALLS_FACTOR = 4


@dataclass
class AgentLimits:
    max_tool_rounds: int = 6
    idle_timeout: float = 60.0  # longest silence inside a streamed reply
    tool_timeout: float = 60.0
    max_tool_calls: int = 8  # calls of one response that run; the rest get an error result
    max_response_chars: int = 100_000  # text + tool-call arguments one response may stream

    @property
    def max_streamed_tool_calls(self) -> int:
        return STREAMED_TOOL_CALLS_FACTOR * self.max_tool_calls


@dataclass
class ToolCall:
    """One tool call of a model response, its arguments parsed (always a JSON object)."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    refusal: str | None = None  # why the call must not run (its result is this error)


async def run_agent(
    llm: FunctionCallingLLM,
    tools: Sequence[AsyncBaseTool],
    messages: list[ChatMessage],
    limits: AgentLimits,
) -> AsyncIterator[AgentEvent]:
    """Run one turn: `messages` is system prompt + history + the new user message."""
    by_name = {tool.metadata.name: tool for tool in tools}
    conversation = list(messages)
    for _round in range(limits.max_tool_rounds + 1):
        response: ChatResponse | None = None
        offer_tools = list(tools) if _round < limits.max_tool_rounds else []
        async for item in stream_llm(
            llm,
            offer_tools,
            conversation,
            limits.idle_timeout,
            max_chars=limits.max_response_chars,
            max_tool_calls=limits.max_streamed_tool_calls,
        ):
            if isinstance(item, TextDelta):
                yield item
            else:
                response = item
        if response is None:
            raise AgentError("llm_empty_response", "The AI model returned nothing.")
        usage = response.additional_kwargs.get(USAGE_KEY)
        if isinstance(usage, TokenUsage):
            yield UsageReported(usage)
        calls = tool_calls(response)
        if not calls:
            text = response.message.content or ""
            if not text.strip():
                raise AgentError("llm_empty_response", "The AI model returned an empty answer.")
            yield TurnFinished(text)
            return
        conversation.append(response.message)
        for index, call in enumerate(calls):
            yield ToolCallStarted(call.id, call.name, call.arguments)
            if index < limits.max_tool_calls:
                tool = by_name.get(call.name)
                output, is_error = await _run_tool(tool, call, limits.tool_timeout)
            else:  # every call needs its result, so the model learns which ones did not run
                output, is_error = _not_run(limits.max_tool_calls), True
            yield ToolCallFinished(call.id, call.name, call.arguments, output, is_error)
            conversation.append(
                ChatMessage(
                    role="tool",
                    content=output,
                    additional_kwargs={"tool_call_id": call.id, "name": call.name},
                )
            )
    raise AgentError("too_many_tool_rounds", "The AI model kept calling tools without answering.")


def _not_run(limit: int) -> str:
    return (
        f"Error: not run: at most {limit} tool calls are run per response. Make the "
        "remaining calls in your next response."
    )


class _ResponseBudget:
    """What one streamed response may cost, counted from the raw chunks as they arrive
    (`ChatResponse.raw`, an OpenAI chat-completion chunk): characters of text, reasoning
    and tool calls, and the number of tool calls."""

    def __init__(self, max_chars: int | None, max_tool_calls: int | None) -> None:
        self.max_chars = max_chars
        self.max_tool_calls = max_tool_calls
        self.chars = 0
        self.calls: set[object] = set()

    def take(self, chunk: Any) -> None:
        for choice in getattr(chunk, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            if delta is None:
                continue
            self.chars += _text_len(getattr(delta, "content", None))
            for key in ("reasoning_content", "reasoning"):
                self.chars += _text_len((getattr(delta, "model_extra", None) or {}).get(key))
            for call in getattr(delta, "tool_calls", None) or ():
                index = getattr(call, "index", None)
                self.calls.add(index if index is not None else getattr(call, "id", None))
                function = getattr(call, "function", None)
                if function is not None:
                    self.chars += _text_len(getattr(function, "arguments", None))
                    self.chars += _text_len(getattr(function, "name", None))
        if self.max_chars is not None and self.chars > self.max_chars:
            log.warning("llm_response_too_large", chars=self.chars)
            raise AgentError(
                "llm_response_too_large",
                f"The AI model's answer grew past {self.max_chars} characters and was stopped.",
            )
        if self.max_tool_calls is not None and len(self.calls) > self.max_tool_calls:
            log.warning("llm_too_many_tool_calls", calls=len(self.calls))
            raise AgentError(
                "llm_too_many_tool_calls",
                "The AI model tried to use far too many tools at once and was stopped.",
            )


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


async def stream_llm(
    llm: FunctionCallingLLM,
    tools: Sequence[AsyncBaseTool],
    conversation: list[ChatMessage],
    idle_timeout: float,
    *,
    tool_required: bool = False,
    max_chars: int | None = None,
    max_tool_calls: int | None = None,
) -> AsyncIterator[TextDelta | ChatResponse]:
    """Yield text deltas, then the complete response; map provider failures to codes.
    `tool_required` makes the model answer with a tool call (structured output).
    `max_chars` and `max_tool_calls` bound the response as it streams (`AgentError`)."""
    budget = _ResponseBudget(max_chars, max_tool_calls)
    iterator: Any = None
    try:
        if tools:
            stream = await llm.astream_chat_with_tools(
                list(tools),
                chat_history=list(conversation),
                allow_parallel_tool_calls=not tool_required,
                tool_required=tool_required,
            )
        else:
            stream = await llm.astream_chat(conversation)
        iterator = stream.__aiter__()
        last: ChatResponse | None = None
        while True:
            try:
                async with asyncio.timeout(idle_timeout):
                    last = await iterator.__anext__()
            except StopAsyncIteration:
                break
            budget.take(last.raw)
            if last.delta:
                yield TextDelta(last.delta)
        if last is not None:
            yield last
    except AgentError:  # over budget: hang up on the provider rather than read on
        await _hang_up(iterator)
        raise
    except TimeoutError:
        raise AgentError(
            "llm_timeout", "The AI model stopped responding. Please try again."
        ) from None
    except openai.APITimeoutError:
        raise AgentError(
            "llm_timeout", "The AI model did not respond in time. Please try again."
        ) from None
    except openai.RateLimitError:
        raise AgentError(
            "llm_rate_limited", "The AI model is busy (rate limited). Please try again shortly."
        ) from None
    except openai.APIStatusError as exc:
        code = "llm_unavailable" if exc.status_code >= 500 else "llm_error"
        if exc.status_code in (401, 403):
            code = "llm_auth_failed"
        log.warning("llm_status_error", status=exc.status_code)
        raise AgentError(
            code, f"The AI model answered with an error (HTTP {exc.status_code})."
        ) from None
    except (openai.APIConnectionError, httpx.TransportError):
        # httpx errors surface directly when the connection drops mid-stream.
        raise AgentError(
            "llm_unreachable", "The connection to the AI model failed. Please try again."
        ) from None
    except openai.APIError as exc:
        # Includes an error object sent inside a 200 stream: the provider's own words go
        # to the log, so the cause is known; the client gets the code.
        log.warning("llm_error", error=type(exc).__name__, detail=str(exc.message)[:300])
        raise AgentError("llm_error", "The AI model failed to answer. Please try again.") from None
    except openai.OpenAIError as exc:
        log.warning("llm_error", error=type(exc).__name__)
        raise AgentError("llm_error", "The AI model failed to answer. Please try again.") from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        # A stream the client library cannot read (bad JSON, missing fields): the
        # provider's fault, not ours.
        log.warning("llm_malformed_response", error=type(exc).__name__)
        raise AgentError(
            "llm_bad_response", "The AI model sent a response that could not be read."
        ) from None


async def _hang_up(iterator: Any, reads: int = 1000) -> None:
    """Close the provider's stream now. Closing the client library's generator would not
    do it: its inner generators, and the HTTP response, would wait for the garbage
    collector. A read cancelled where it waits runs every cleanup down to the response;
    chunks already buffered come back without waiting and are dropped (a 64 KB read holds
    a few hundred)."""
    if iterator is None:
        return
    for _ in range(reads):
        try:
            async with asyncio.timeout(0):  # fires as soon as the read waits
                await iterator.__anext__()
        except (TimeoutError, StopAsyncIteration):
            return
        except Exception:  # the stream broke by itself: nothing left open
            return
    log.warning("llm_stream_not_closed")  # left to the garbage collector


def tool_calls(response: ChatResponse) -> list[ToolCall]:
    """The response's tool calls; arguments that are not a JSON object end the turn."""
    calls = []
    for block in response.message.blocks:
        if not isinstance(block, ToolCallBlock):
            continue
        raw = block.tool_kwargs
        refusal = None
        if isinstance(raw, str):
            try:
                arguments = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError:
                arguments = None
            except RecursionError:  # nested deeper than the parser goes
                arguments = {}
                refusal = TOO_DEEP_MESSAGE
        else:
            arguments = raw
        if isinstance(arguments, dict) and too_deep(arguments):
            # Never run, shown or stored as sent: past ~255 levels it cannot even be
            # serialized back. The call keeps a cut-down copy and gets an error result.
            arguments, refusal = cap_json_depth(arguments), TOO_DEEP_MESSAGE
        if not isinstance(arguments, dict):
            log.warning("llm_bad_tool_call", tool=block.tool_name)
            raise AgentError(
                "llm_bad_tool_call",
                f"The AI model sent unreadable arguments for the tool '{block.tool_name}'.",
            )
        if not block.tool_call_id:
            # Some providers omit ids; the result must point at the same id we send back.
            block.tool_call_id = f"call_{uuid.uuid4().hex[:12]}"
        if refusal is not None:
            log.warning("llm_tool_call_too_deep", tool=block.tool_name)
            refusal = f"Error: invalid arguments for '{block.tool_name}': {refusal}"
        calls.append(ToolCall(block.tool_call_id, block.tool_name, arguments, refusal))
    return calls


async def _run_tool(
    tool: AsyncBaseTool | None, call: ToolCall, time_limit: float
) -> tuple[str, bool]:
    """(output text, is_error). Never raises: failures are results the LLM can read."""
    if call.refusal is not None:
        return call.refusal, True
    if tool is None:
        return f"Error: there is no tool named '{call.name}'.", True
    schema = tool.metadata.fn_schema
    arguments = call.arguments
    if schema is not None:
        try:
            # By Python name: a property named `self` would collide with acall's own
            # `self` (an MCP schema's `self` is field `f_self`, alias "self"); the tool
            # maps the names back to the server's own.
            arguments = schema.model_validate(arguments).model_dump(exclude_unset=True)
        except ValidationError as exc:
            problems = validation_problems(exc)
            return f"Error: invalid arguments for '{call.name}': {problems}", True
    if "self" in arguments:  # left only if the schema does not declare it: cannot be passed
        return f"Error: invalid arguments for '{call.name}': 'self' is not a parameter", True
    try:
        async with asyncio.timeout(time_limit):
            output = await tool.acall(**arguments)
    except TimeoutError:
        return f"Error: the tool '{call.name}' did not finish within {time_limit:g} s.", True
    except Exception as exc:  # a tool's failure is information for the LLM, not a crash
        log.warning("tool_failed", tool=call.name, error=type(exc).__name__)
        return f"Error: {type(exc).__name__}: {exc}"[:MAX_TOOL_OUTPUT_CHARS], True
    text = str(output.content) if output.content is not None else ""
    is_error = bool(getattr(output, "is_error", False))
    return text[:MAX_TOOL_OUTPUT_CHARS], is_error
