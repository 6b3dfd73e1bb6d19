"""How deeply JSON from outside may nest.

pydantic-core's serializer refuses values nested deeper than about 255 levels ("Maximum
serialization depth exceeded"), and Python's json module recurses once per level, so an
over-deep document that got stored would make every response holding it a 500. Nothing
this service keeps needs more than a few levels: documents from people (the business's
`ai_context`) and from models (tool-call arguments) are refused past `MAX_JSON_DEPTH`,
and values stored before that rule are cut down to it when read.
"""

from __future__ import annotations

from typing import Any

MAX_JSON_DEPTH = 32  # containers inside containers; far below the serializer's ~255
TOO_DEEP_MARKER = "[removed: nested too deep]"
TOO_DEEP_MESSAGE = f"must not nest deeper than {MAX_JSON_DEPTH} levels"


def json_depth(value: Any, stop_after: int | None = None) -> int:
    """How many containers (objects, arrays) deep `value` nests: 0 for a scalar, 1 for
    `{}`. Iterative, so any depth is measured without recursion; with `stop_after`, it
    stops at the first container deeper than that and answers `stop_after + 1`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if stop_after is not None and deepest > stop_after:
            return stop_after + 1
        stack.extend((child, depth + 1) for child in children)
    return deepest


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    return json_depth(value, stop_after=limit) > limit


def check_json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> Any:
    """`value` itself, or ValueError if it nests deeper than `limit` (for validators)."""
    if too_deep(value, limit):
        raise ValueError(f"must not nest deeper than {limit} levels")
    return value


def cap_json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> Any:
    """A copy of `value` with every container deeper than `limit` replaced by
    `TOO_DEEP_MARKER`: safe to serialize and to show. `value` itself if it is within
    the limit (the common case costs one walk and no copy)."""
    if not too_deep(value, limit):
        return value
    return _capped(value, limit)


def _capped(value: Any, room: int) -> Any:
    # Recursion is bounded by `limit`, not by the value's depth.
    if not isinstance(value, dict | list | tuple):
        return value
    if room <= 0:
        return TOO_DEEP_MARKER
    if isinstance(value, dict):
        return {key: _capped(child, room - 1) for key, child in value.items()}
    return [_capped(child, room - 1) for child in value]
