"""An MCP tool's JSON input schema as a pydantic model, for llama_index's `fn_schema`.

The model validates the LLM's arguments (types, required fields, enums, arrays, nested
objects, `$ref`/`$defs`), and its `model_json_schema()` is the server's own schema, so
the LLM is shown exactly the parameters, descriptions and constraints the server wrote.
Property names that are not Python identifiers travel as aliases.
"""

from __future__ import annotations

import copy
import keyword
import re
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

_PRIMITIVES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}
_NOT_IDENT = re.compile(r"\W")


class ToolArguments(BaseModel):
    """Base of generated argument models; reports the server's schema as its own."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    __mcp_schema__: dict[str, Any] | None = None

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        if cls.__mcp_schema__ is not None:
            return copy.deepcopy(cls.__mcp_schema__)
        return super().model_json_schema(*args, **kwargs)


class StrictToolArguments(ToolArguments):
    """For schemas with `additionalProperties: false`: unknown arguments are refused."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")


def model_from_schema(name: str, schema: dict[str, Any]) -> type[ToolArguments]:
    """Build the argument model of one tool. Never raises: a schema part it cannot map
    becomes `Any`, which the server still validates."""
    root = schema if isinstance(schema, dict) else {}
    defs = {**root.get("definitions", {}), **root.get("$defs", {})}
    builder = _Builder(defs)
    model = builder.object_model(_model_name(name), root, top_level=True)
    shown = copy.deepcopy(root) or {"type": "object", "properties": {}}
    shown.setdefault("type", "object")
    shown.setdefault("properties", {})
    model.__mcp_schema__ = shown
    return model


def _model_name(text: str) -> str:
    cleaned = _NOT_IDENT.sub("_", text).strip("_") or "Tool"
    return "".join(part[:1].upper() + part[1:] for part in cleaned.split("_") if part) or "Tool"


def _python_name(prop: str, taken: set[str]) -> str:
    candidate = _NOT_IDENT.sub("_", prop)
    if (
        not candidate
        or candidate[0].isdigit()
        or keyword.iskeyword(candidate)
        or candidate.startswith(("_", "model_"))
        or hasattr(BaseModel, candidate)
    ):
        candidate = f"f_{candidate}"
    base, n = candidate, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    taken.add(candidate)
    return candidate


class _Builder:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.resolving: set[str] = set()
        self.models: dict[str, type[BaseModel]] = {}

    def object_model(
        self, name: str, schema: dict[str, Any], *, top_level: bool = False
    ) -> type[ToolArguments]:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        taken: set[str] = set()
        fields: dict[str, Any] = {}
        for prop, prop_schema in properties.items():
            if not isinstance(prop, str):
                continue
            prop_schema = prop_schema if isinstance(prop_schema, dict) else {}
            annotation = self.type_of(prop_schema, f"{name}{_model_name(prop)}")
            python_name = _python_name(prop, taken)
            options: dict[str, Any] = {}
            if python_name != prop:
                options["alias"] = prop
            if isinstance(prop_schema.get("description"), str):
                options["description"] = prop_schema["description"]
            if prop in required:
                fields[python_name] = (annotation, Field(..., **options))
            else:
                default = prop_schema.get("default")
                fields[python_name] = (annotation | None, Field(default=default, **options))
        extra = "forbid" if schema.get("additionalProperties") is False else "allow"
        config = ConfigDict(populate_by_name=True, extra=extra)
        if top_level:
            base = StrictToolArguments if extra == "forbid" else ToolArguments
            return create_model(name, __base__=base, **fields)  # type: ignore[call-overload]
        return create_model(name, __config__=config, **fields)  # type: ignore[call-overload]

    def type_of(self, schema: dict[str, Any], name: str) -> Any:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._ref(ref, name)
        if "const" in schema and _hashable(schema["const"]):
            return Literal[schema["const"]]  # type: ignore[valid-type]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum and all(_hashable(v) for v in enum):
            return Literal[tuple(enum)]  # type: ignore[valid-type]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                types = [
                    self.type_of(o if isinstance(o, dict) else {}, f"{name}{i}")
                    for i, o in enumerate(options)
                ]
                return Union[tuple(types)]  # noqa: UP007 (built from a list)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
            return self.type_of(all_of[0], name)
        kind = schema.get("type")
        if isinstance(kind, list):
            types = [self.type_of({**schema, "type": k}, name) for k in kind if isinstance(k, str)]
            return Union[tuple(types)] if types else Any  # noqa: UP007
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        if kind == "array":
            items = schema.get("items")
            return (
                list[self.type_of(items, f"{name}Item")] if isinstance(items, dict) else list[Any]
            )
        if kind == "object" or "properties" in schema:
            if schema.get("properties"):
                return self.object_model(name, schema)
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                return dict[str, self.type_of(extra, f"{name}Value")]  # type: ignore[misc]
            return dict[str, Any]
        return Any

    def _ref(self, ref: str, name: str) -> Any:
        match = re.fullmatch(r"#/(?:\$defs|definitions)/(.+)", ref)
        if not match or match.group(1) not in self.defs:
            return Any
        key = match.group(1)
        if key in self.models:
            return self.models[key]
        if key in self.resolving:  # a recursive type: the server checks the depth
            return Any
        self.resolving.add(key)
        try:
            resolved = self.type_of(self.defs[key], _model_name(key))
        finally:
            self.resolving.discard(key)
        if isinstance(resolved, type) and issubclass(resolved, BaseModel):
            self.models[key] = resolved
        return resolved


def _hashable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None
