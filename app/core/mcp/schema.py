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

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
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
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if cls.__mcp_schema__ is not None:
            return copy.deepcopy(cls.__mcp_schema__)
        return super().model_json_schema(*args, **kwargs)


class StrictToolArguments(ToolArguments):
    """For schemas with `additionalProperties: false`: unknown arguments are refused."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")


MAX_DEPTH = 24


def model_from_schema(name: str, schema: dict[str, Any]) -> type[ToolArguments]:
    """Build the argument model of one tool. Never raises: a schema part it cannot map
    becomes `Any` (the server still validates), and a schema it cannot read at all gives
    a permissive model showing the schema as it is."""
    root = schema if isinstance(schema, dict) else {}
    if not _valid_json_schema(root):
        # Unreadable schemas would make the provider refuse every request that offers
        # the tool; offer it with open arguments instead (the server still validates).
        root = {"type": "object", "properties": {}, "additionalProperties": True}
    defs = {
        **_dict(root.get("definitions")),
        **_dict(root.get("$defs")),
    }
    builder = _Builder(defs)
    shown = copy.deepcopy(root) or {"type": "object", "properties": {}}
    try:
        top = builder.flatten_root(root)
        model = builder.object_model(_model_name(name), top, top_level=True)
        if top is not root:  # a root $ref or allOf: show the LLM the resolved object
            shown = {**top, **({"$defs": root["$defs"]} if "$defs" in root else {})}
    except (RecursionError, TypeError, ValueError, KeyError, AttributeError):
        model = create_model(_model_name(name), __base__=ToolArguments)
    shown.setdefault("type", "object")
    shown.setdefault("properties", {})
    model.__mcp_schema__ = shown
    return model


def _valid_json_schema(schema: dict[str, Any]) -> bool:
    try:
        Draft202012Validator.check_schema(schema)
    except (SchemaError, RecursionError, TypeError, ValueError):
        return False
    return True


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _model_name(text: str) -> str:
    cleaned = _NOT_IDENT.sub("_", text).strip("_") or "Tool"
    return "".join(part[:1].upper() + part[1:] for part in cleaned.split("_") if part) or "Tool"


def _python_name(prop: str, taken: set[str]) -> str:
    candidate = _NOT_IDENT.sub("_", prop)
    if (
        not candidate
        or candidate[0].isdigit()
        or keyword.iskeyword(candidate)
        or candidate == "self"  # FunctionTool.acall(self, ...) would take it
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
        self.depth = 0

    def flatten_root(self, root: dict[str, Any]) -> dict[str, Any]:
        """Resolve a top-level `$ref` and merge a top-level `allOf` of objects."""
        ref = root.get("$ref")
        if isinstance(ref, str):
            match = re.fullmatch(r"#/(?:\$defs|definitions)/(.+)", ref)
            target = self.defs.get(match.group(1)) if match else None
            if isinstance(target, dict):
                return self.flatten_root(target)
        parts = root.get("allOf")
        if isinstance(parts, list) and parts and all(isinstance(p, dict) for p in parts):
            merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
            for part in (self.flatten_root(p) for p in parts):
                merged["properties"].update(_dict(part.get("properties")))
                merged["required"] += [r for r in part.get("required") or [] if isinstance(r, str)]
            merged["properties"].update(_dict(root.get("properties")))
            return merged
        return root

    def object_model(
        self, name: str, schema: dict[str, Any], *, top_level: bool = False
    ) -> type[ToolArguments]:
        properties = _dict(schema.get("properties"))
        required_list = schema.get("required")
        required = (
            {r for r in required_list if isinstance(r, str)}
            if isinstance(required_list, list)
            else set()
        )
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
        extra: Literal["forbid", "allow"] = (
            "forbid" if schema.get("additionalProperties") is False else "allow"
        )
        config = ConfigDict(populate_by_name=True, extra=extra)
        if top_level:
            base = StrictToolArguments if extra == "forbid" else ToolArguments
            return create_model(name, __base__=base, **fields)
        return create_model(name, __config__=config, **fields)

    def type_of(self, schema: dict[str, Any], name: str) -> Any:
        if not isinstance(schema, dict):
            return Any
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:  # absurdly deep: let the server judge
                return Any
            return self._type_of(schema, name)
        finally:
            self.depth -= 1

    def _type_of(self, schema: dict[str, Any], name: str) -> Any:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._ref(ref, name)
        if "const" in schema and _hashable(schema["const"]):
            return _subscript(Literal, schema["const"])
        enum = schema.get("enum")
        if isinstance(enum, list) and enum and all(_hashable(v) for v in enum):
            return _subscript(Literal, *enum)
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
        if not isinstance(kind, str | None):
            return Any
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        if kind == "array":
            items = schema.get("items")
            return (
                _subscript(list, self.type_of(items, f"{name}Item"))
                if isinstance(items, dict)
                else list[Any]
            )
        if kind == "object" or "properties" in schema:
            if _dict(schema.get("properties")):
                return self.object_model(name, schema)
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                return _subscript(dict, str, self.type_of(extra, f"{name}Value"))
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


def _subscript(origin: Any, *args: Any) -> Any:
    """`origin[args]` for type arguments known only at run time."""
    return origin[args[0] if len(args) == 1 else args]
