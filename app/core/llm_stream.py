"""Reading a streamed chat completion the way OpenAI-compatible servers really send it.

The providers we name stream the same protocol with documented differences, and the
client library's own accumulator (llama_index's `update_tool_calls`) handles few of them:
it concatenates a tool call's id and name when a server repeats them in every delta
(llama.cpp), merges calls that have no `index` (some Gemini and Ollama versions), reads
only the first call of a delta that carries several, and raises on arguments sent as a
JSON object instead of a string. `StreamAccumulator` takes each chunk as it comes and
handles each of these:

- tool-call deltas with or without `index` and `id`; ids and names repeated in every
  delta are kept once; several calls in one delta; the legacy `function_call` field when
  a server sends only that;
- arguments in one piece, split anywhere (mid-token included), or sent as an object;
- `finish_reason` `stop`, `tool_calls` or missing: the calls that arrived are the calls;
- `reasoning_content` (DeepSeek, Together, Groq with reasoning) or `reasoning` (vLLM,
  OpenRouter) kept apart from the reply: never text the owner sees or that is saved;
- token usage from a final chunk with empty `choices` (OpenAI's `include_usage`), from
  the last chunk with choices (Together, Ollama), or from `x_groq.usage` (Groq).

Keep-alive comments (`: OPENROUTER PROCESSING`) are dropped by the SSE decoder, and an
error object inside a 200 stream is raised by it as `openai.APIError`.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    @classmethod
    def read(cls, raw: Any) -> TokenUsage | None:
        """From a `usage` object or mapping; None if it holds no counts."""
        if raw is None:
            return None
        prompt = _count(_field(raw, "prompt_tokens"))
        completion = _count(_field(raw, "completion_tokens"))
        if prompt is None and completion is None:
            return None
        return cls(prompt or 0, completion or 0)


@dataclass
class StreamedToolCall:
    index: Any
    id: str = ""
    name: str = ""
    arguments: str = ""

    def add(self, call_id: Any, name: Any, arguments: Any) -> None:
        if isinstance(call_id, str) and call_id and not self.id:
            self.id = call_id  # repeated (llama.cpp) or absent in later deltas: kept once
        if isinstance(name, str) and name and name != self.name:
            # Names come whole in every server we know; a later, different piece is
            # still appended, as the protocol allows names to be split.
            self.name = name if not self.name else self.name + name
        if isinstance(arguments, dict | list):
            self.arguments = json.dumps(arguments)  # an object: the whole arguments
        elif isinstance(arguments, str):
            self.arguments += arguments


@dataclass
class StreamAccumulator:
    """The response so far. `add(chunk)` returns the chunk's (text, reasoning) deltas."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[StreamedToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: TokenUsage | None = None

    @property
    def content(self) -> str:
        return "".join(self.text)

    @property
    def empty(self) -> bool:
        """Nothing the model said: no text, no reasoning, no call."""
        return not (self.text or self.reasoning or self.calls)

    def add(self, chunk: Any) -> tuple[str, str]:
        usage = TokenUsage.read(_field(chunk, "usage")) or TokenUsage.read(
            _field(_field(chunk, "x_groq"), "usage")
        )
        if usage is not None:
            self.usage = usage
        choices = _field(chunk, "choices") or ()
        choice = next((c for c in choices if _field(c, "index") in (0, None)), None)
        if choice is None:
            return "", ""
        finish = _field(choice, "finish_reason")
        if isinstance(finish, str):
            self.finish_reason = finish
        delta = _field(choice, "delta")
        if delta is None:
            return "", ""
        text = _text(_field(delta, "content"))
        reasoning = _text(_field(delta, "reasoning_content")) or _text(_field(delta, "reasoning"))
        if text:
            self.text.append(text)
        if reasoning:
            self.reasoning.append(reasoning)
        tool_calls = _field(delta, "tool_calls")
        if tool_calls:
            for call in tool_calls:
                self._add_call(call)
        else:
            legacy = _field(delta, "function_call")  # only when no tool_calls came with it
            if legacy is not None:
                self._call_for("legacy", None, _field(legacy, "name")).add(
                    None, _field(legacy, "name"), _field(legacy, "arguments")
                )
        return text, reasoning

    def _add_call(self, delta: Any) -> None:
        function = _field(delta, "function")
        name, arguments = _field(function, "name"), _field(function, "arguments")
        call_id = _field(delta, "id")
        self._call_for(_field(delta, "index"), call_id, name).add(call_id, name, arguments)

    def _call_for(self, index: Any, call_id: Any, name: Any) -> StreamedToolCall:
        """The call a delta continues, or a new one. With an index, the index decides.
        Without one: a known id continues its call, a new id or a new name (on a call
        that already has a name) starts one, anything else continues the last call."""
        if index is not None:
            for call in self.calls:
                if call.index == index and not _starts_another(call, call_id, name):
                    return call
        else:
            last = self.calls[-1] if self.calls else None
            if isinstance(call_id, str) and call_id:
                for call in self.calls:
                    if call.id == call_id:
                        return call
                if last is not None and not last.id and not last.arguments:
                    return last
            elif last is not None and not (isinstance(name, str) and name and last.name):
                return last
            index = ("auto", len(self.calls))
        call = StreamedToolCall(index=index)
        self.calls.append(call)
        return call

    def tool_calls(self) -> list[StreamedToolCall]:
        """The complete calls, each with an id (made up where the server sent none: the
        tool result must name the same id we send back)."""
        done = [c for c in self.calls if c.name]
        for call in done:
            if not call.id:
                call.id = f"call_{uuid.uuid4().hex[:12]}"
        return done


def _starts_another(call: StreamedToolCall, call_id: Any, name: Any) -> bool:
    """A delta with a new id and a name of its own on an index already in use: a server
    that numbers every call 0 (seen in some Gemini-compatible endpoints)."""
    return bool(
        isinstance(call_id, str)
        and call_id
        and call.id
        and call_id != call.id
        and isinstance(name, str)
        and name
    )


def _field(value: Any, name: str) -> Any:
    """A field of an SDK object or a mapping. The SDK builds chunks without validation,
    so a field may be missing, of another type, or only in `model_extra`."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get(name)
    found = getattr(value, name, None)
    if found is None:
        extra = getattr(value, "model_extra", None)
        if isinstance(extra, dict):
            found = extra.get(name)
    return found


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return max(0, min(int(value), 2**31 - 1))
