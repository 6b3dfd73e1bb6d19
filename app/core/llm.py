"""The LLM factory: any OpenAI-compatible provider as a llama_index function-calling LLM.

Built once per app (`AppContext.llm`) and shared by every request: the underlying OpenAI
client keeps its HTTP connection pool. `None` when no model is configured; the AI
endpoints then answer 503 naming the settings to set, and the rest of the API works.

`CompatibleLLM` is llama_index's `OpenAILike` with its own reading of the stream
(`app.core.llm_stream`, the providers' documented differences) and fallbacks for servers
that refuse part of a request (`CompatibleLLM._fall_back`): a forced `tool_choice`
(llama.cpp refuses "required" when streaming but takes a named tool; vLLM without a tool
parser refuses it) and `stream_options` (servers that predate token usage in streams).
Each refusal is logged once and remembered for the life of the process.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import httpx
import openai
import structlog
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import ToolMetadata
from llama_index.llms.openai.utils import O1_MODELS, resolve_tool_choice, to_openai_message_dicts
from llama_index.llms.openai_like import OpenAILike
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import PrivateAttr

from app.core.config import Settings
from app.core.errors import DomainError
from app.core.llm_stream import StreamAccumulator

log = structlog.stdlib.get_logger(__name__)

# Local servers such as Ollama need no key, but the OpenAI client insists on one.
_NO_KEY = "not-needed"

# `ChatResponse.additional_kwargs` key of the final response's `TokenUsage`.
USAGE_KEY = "telaten_usage"


class LLMNotConfiguredError(DomainError):
    status_code = 503

    def __init__(self) -> None:
        super().__init__(
            "The AI advisor is not configured: set LLM_MODEL_NAME and LLM_BASE_URL "
            "(or LLM_PROVIDER), and LLM_API_KEY if the provider needs one."
        )


class CompatibleLLM(OpenAILike):
    """`OpenAILike` that streams tolerantly. Intermediate responses carry only the text
    `delta` and the raw chunk; the last one carries the whole message (text and tool
    calls, never the reasoning) and, where the server sent it, the token usage."""

    stream_usage: bool = True
    _refused: set[str] = PrivateAttr(default_factory=set)

    async def _astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        message_dicts = [_with_text(m) for m in to_openai_message_dicts(messages, model=self.model)]
        client = self._get_aclient()

        async def gen() -> ChatResponseAsyncGen:
            override: dict[str, Any] = {}
            fell_back = reconnected = False
            while True:
                request = self._request_kwargs({**kwargs, **override})
                accumulator = StreamAccumulator()
                try:
                    stream = await _stream_completion(client, message_dicts, request)
                    async for chunk in stream:
                        text, _reasoning = accumulator.add(chunk)
                        yield ChatResponse(
                            message=ChatMessage(role=MessageRole.ASSISTANT),
                            delta=text,
                            raw=chunk,
                        )
                except openai.APIConnectionError:
                    # A server that broke its refused stream may have dropped the pooled
                    # connection the fallback reused: one more try on a new one.
                    if not fell_back or reconnected:
                        raise
                    reconnected = True
                    continue
                except (openai.APIError, httpx.TransportError) as exc:
                    retry = (
                        self._fall_back(request, exc, accumulator) if accumulator.empty else None
                    )
                    if retry is None:
                        raise
                    override.update(retry)
                    fell_back = True
                    continue
                retry = self._fall_back(request, None, accumulator) if accumulator.empty else None
                if retry is not None and override.get("tool_choice") != "none":
                    override.update(retry)
                    fell_back = True
                    continue
                yield self._final(accumulator)
                return

        return gen()

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,  # named: llama_index checks the signature for it
        tool_choice: str | dict[str, Any] | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """What `OpenAI._prepare_chat_with_tools` prepares, with each tool's schema made
        once per process (`_tool_spec`) instead of on every model call: building a
        schema with pydantic costs more than the rest of a turn's own work."""
        strict = self.strict if strict is None else strict
        specs = [_tool_spec(tool.metadata, strict) for tool in tools]
        messages = chat_history or []
        if isinstance(user_msg, str):
            user_msg = ChatMessage(role=MessageRole.USER, content=user_msg)
        if user_msg:
            messages.append(user_msg)
        prepared: dict[str, Any] = {
            "messages": messages,
            "tools": specs or None,
            "tool_choice": resolve_tool_choice(tool_choice, tool_required) if specs else None,
            **kwargs,
        }
        if specs and self.model not in O1_MODELS:
            prepared["parallel_tool_calls"] = allow_parallel_tool_calls
        return prepared

    def _request_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        request = self._get_model_kwargs(stream=True, **kwargs)
        if self.stream_usage and "stream_options" not in self._refused:
            request["stream_options"] = {"include_usage": True}
        choice = request.get("tool_choice")
        if choice == "required" and "required" in self._refused:
            only = _only_tool(request)
            choice = _named(only) if only and "named" not in self._refused else "auto"
        elif isinstance(choice, dict) and "named" in self._refused:
            choice = "auto"
        if choice is not None:
            request["tool_choice"] = choice
        return request

    def _fall_back(
        self,
        request: dict[str, Any],
        exc: openai.APIError | httpx.TransportError | None,
        accumulator: StreamAccumulator,
    ) -> dict[str, Any] | None:
        """What to change to ask once more (None: do not), after a refusal or an empty
        answer. A refusal is a 400/422, an error object in a 200 stream, or, for a forced
        tool choice only, a 200 stream that ends or breaks with nothing in it (llama.cpp's
        server raises inside its stream: a keep-alive comment, then the end). HTTP 5xx,
        timeouts and failed connections are not refusals.

        - `stream_options` refused (named in the error): asked without, so no usage;
        - `tool_choice: "required"` refused: the one tool by name where only one is
          offered (roadmap generation; llama.cpp and vLLM take that), else "auto";
        - a named choice refused: "auto";
        - an empty answer with tools offered on "auto": asked with `tool_choice: "none"`
          (llama.cpp's chatml-function-calling can only answer "auto" with a tool call,
          its text branch ends at once), for this request only.
        """
        broken = isinstance(exc, httpx.TransportError)
        if exc is not None and not broken and not _refusal(exc):
            return None
        detail = _detail(exc)
        if (
            exc is not None
            and not broken
            and "stream_options" in request
            and "stream_options" in detail
        ):
            self._refused.add("stream_options")
            log.warning("llm_stream_options_refused", detail=detail)
            return {}
        choice = request.get("tool_choice")
        if choice == "required" and "required" not in self._refused:
            self._refused.add("required")
            fallback = "named" if _only_tool(request) else "auto"
            log.warning("llm_tool_choice_refused", choice=choice, fallback=fallback, detail=detail)
            return {}
        if isinstance(choice, dict) and "named" not in self._refused:
            self._refused.add("named")
            log.warning("llm_tool_choice_refused", choice="named", fallback="auto", detail=detail)
            return {}
        if broken:
            return None
        if (
            exc is None
            and choice == "auto"
            and request.get("tools")
            and accumulator.finish_reason is not None  # ended as an answer ends
        ):
            log.warning("llm_empty_with_tools", fallback="none")
            return {"tool_choice": "none"}
        return None

    def _final(self, accumulator: StreamAccumulator) -> ChatResponse:
        blocks: list[Any] = [TextBlock(text=accumulator.content)]
        blocks.extend(
            ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=c.arguments)
            for c in accumulator.tool_calls()
        )
        extra: dict[str, Any] = {"finish_reason": accumulator.finish_reason}
        if accumulator.usage is not None:
            extra[USAGE_KEY] = accumulator.usage
        if accumulator.reasoning:
            log.debug("llm_reasoning", chars=sum(len(r) for r in accumulator.reasoning))
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks),
            delta="",
            raw=None,
            additional_kwargs=extra,
        )


# Longest `maxLength` sent in a tool's schema. llama.cpp turns a forced call's schema
# into a grammar that repeats a rule once per character, and refuses one with
# `maxLength: 2000` ("number of rules ... exceeds sane defaults"): the roadmap failed.
MAX_SCHEMA_LENGTH = 300


async def _stream_completion(
    client: openai.AsyncOpenAI, messages: list[Any], request: dict[str, Any]
) -> openai.AsyncStream[ChatCompletionChunk]:
    """`client.chat.completions.create(messages=..., stream=True, **request)` without its
    walk of the whole body against the SDK's typed dicts (which copies every message
    and tool schema on every call, for a body that is plain JSON already): the same
    POST through the client, with its authentication, retries and error mapping."""
    return await client.post(
        "/chat/completions",
        body={"messages": messages, **request},
        cast_to=ChatCompletion,
        options={"security": {"bearer_auth": True}},
        stream=True,
        stream_cls=openai.AsyncStream[ChatCompletionChunk],
    )


# A tool's spec as sent, per parameters model: a turn binds new tool objects, but their
# schemas are those of the same models (the domain tools' and, until mcp.json or a
# server's tools change, the MCP tools'). Weak keys: a model that is gone (an MCP
# server's tools were replaced) takes its entry with it.
_SPECS: weakref.WeakKeyDictionary[type, dict[tuple[str, str, bool], dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _tool_spec(metadata: ToolMetadata, strict: bool) -> dict[str, Any]:
    """The OpenAI tool spec of `metadata`, built once per parameters model, name,
    description and strictness. Callers must not change it."""
    key = (metadata.name or "", metadata.description, strict)
    model = metadata.fn_schema
    cached = _SPECS.get(model) if model is not None else None
    if cached is not None and key in cached:
        return cached[key]
    spec = metadata.to_openai_tool(skip_length_check=True)
    spec["function"]["strict"] = strict
    spec["function"]["parameters"]["additionalProperties"] = False
    spec = _grammar_friendly(spec)
    if model is not None:
        _SPECS.setdefault(model, {})[key] = spec
    return spec


def _grammar_friendly(tool: dict[str, Any]) -> dict[str, Any]:
    """The tool's schema with every `maxLength` at most `MAX_SCHEMA_LENGTH`: the model
    is asked for shorter text than the service accepts (validation keeps the real
    limits), and a grammar-constrained server can still compile the schema."""

    def clamp(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: min(v, MAX_SCHEMA_LENGTH)
                if k == "maxLength" and isinstance(v, int) and not isinstance(v, bool)
                else clamp(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [clamp(v) for v in node]
        return node

    return clamp(tool)


def _with_text(message: Any) -> Any:
    """An assistant message that only calls tools, with `content: ""` rather than null:
    both are valid OpenAI input, and some servers (llama-cpp-python) refuse null."""
    if (
        isinstance(message, dict)
        and message.get("role") == "assistant"
        and message.get("content") is None
        and message.get("tool_calls")
    ):
        return {**message, "content": ""}
    return message


def _only_tool(request: dict[str, Any]) -> str | None:
    tools = request.get("tools") or []
    if len(tools) != 1:
        return None
    name = (tools[0].get("function") or {}).get("name")
    return name if isinstance(name, str) else None


def _named(tool: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool}}


def _refusal(exc: openai.APIError | httpx.TransportError) -> bool:
    """A request the server would not take (400/422), or an error object in a 200
    stream (`APIError` itself, not one of its HTTP or connection subclasses)."""
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return True
    return type(exc) is openai.APIError


def _detail(exc: openai.APIError | httpx.TransportError | None) -> str:
    """The provider's own words, for the log (never sent to a client)."""
    if exc is None:
        return "empty stream"
    if isinstance(exc, httpx.TransportError):
        return f"stream broke before its first chunk ({type(exc).__name__})"
    return str(getattr(exc, "message", "") or exc)[:300]


def build_llm(settings: Settings) -> FunctionCallingLLM | None:
    if not settings.llm_configured:
        return None
    api_key = settings.LLM_API_KEY.get_secret_value() if settings.LLM_API_KEY else _NO_KEY
    return CompatibleLLM(
        model=settings.LLM_MODEL_NAME,
        api_base=settings.llm_base_url,
        api_key=api_key,
        temperature=settings.LLM_TEMPERATURE,
        max_tokens=settings.LLM_MAX_TOKENS,
        timeout=settings.LLM_TIMEOUT_SECONDS,
        max_retries=settings.LLM_MAX_RETRIES,
        context_window=settings.LLM_CONTEXT_WINDOW,
        is_chat_model=True,
        is_function_calling_model=True,
        reuse_client=True,
        stream_usage=settings.LLM_STREAM_USAGE,
    )
