"""mcp.json parsing and schema conversion (no servers needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.mcp import load_mcp_config, sanitize_tool_name
from app.core.mcp.config import Timeouts
from app.core.mcp.schema import model_from_schema

# Reading mcp.json touches no database.
pytestmark = pytest.mark.once


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(document))
    return path


def test_missing_file_means_no_servers(tmp_path: Path) -> None:
    config = load_mcp_config(tmp_path / "nope.json", {})
    assert config.servers == [] and config.errors == []


@pytest.mark.parametrize("text", ["{not json", "[]", '{"servers": {}}', '{"mcpServers": []}'])
def test_unreadable_file_is_one_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(text)
    config = load_mcp_config(path, {})
    assert config.servers == [] and len(config.errors) == 1 and str(path) in config.errors[0]


def test_design_example_with_env_expansion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "fs": {
                    "command": "npx",
                    "args": ["-y", "@modelcontextprotocol/server-filesystem", "${DATA:-/data}"],
                    "env": {"TOKEN": "${FS_TOKEN}"},
                },
                "search": {
                    "url": "https://example.org/mcp",
                    "transport": "streamable-http",
                    "headers": {"Authorization": "Bearer ${SEARCH_KEY}"},
                    "timeout": 5,
                    "connect_timeout": 12,
                    "prefix": True,
                },
                "legacy": {"url": "http://localhost:9000/sse"},
                "inferred": {"url": "http://localhost:9001/mcp"},
                "off": {"command": "x", "enabled": False},
            }
        },
    )
    defaults = Timeouts(call=7, connect=90)  # the settings' MCP_*_TIMEOUT_SECONDS
    config = load_mcp_config(path, {"FS_TOKEN": "t0k", "SEARCH_KEY": "k3y"}, defaults)
    assert config.errors == []
    by = {s.name: s for s in config.servers}
    assert set(by) == {"fs", "search", "legacy", "inferred"}
    assert by["fs"].transport == "stdio" and by["fs"].env == {"TOKEN": "t0k"}
    assert by["fs"].args[-1] == "/data"
    assert by["search"].headers == {"Authorization": "Bearer k3y"} and by["search"].timeout == 5
    assert by["search"].connect_timeout == 12
    assert (by["fs"].timeout, by["fs"].connect_timeout) == (7, 90)
    assert by["search"].prefix == "search"
    assert by["legacy"].transport == "sse" and by["inferred"].transport == "streamable-http"
    assert "k3y" not in by["search"].target


def test_each_bad_entry_is_named_and_the_rest_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "good": {"command": "run-me"},
                "no_target": {"args": ["x"]},
                "bad_transport": {"url": "http://x/mcp", "transport": "carrier-pigeon"},
                "bad_timeout": {"command": "x", "timeout": "soon"},
                "bad_connect": {"command": "x", "connect_timeout": 0},
                "unset_var": {
                    "url": "http://x/mcp",
                    "headers": {"Authorization": "Bearer ${MISSING}"},
                },
                "typo": {"comand": "x"},
                "bad name!": {"command": "x"},
            }
        },
    )
    config = load_mcp_config(path, {})
    assert [s.name for s in config.servers] == ["good"]
    assert len(config.errors) == 7
    text = "\n".join(config.errors)
    for fragment in (
        "'no_target': needs 'command'",
        "'bad_transport': 'transport' must be one of",
        "'bad_timeout': 'timeout'",
        "'bad_connect': 'connect_timeout' must be a number of seconds",
        "'unset_var': 'headers.Authorization' uses ${MISSING}",
        "'typo': unknown key(s) comand",
        "'bad name!'",
    ):
        assert fragment in text, fragment


def test_tool_names_are_sanitised_for_llm_providers() -> None:
    assert sanitize_tool_name("get weather.now") == "get_weather_now"
    long = sanitize_tool_name("x" * 100)
    assert len(long) == 64 and long != sanitize_tool_name("x" * 99)


SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "what to search"},
        "mode": {"type": "string", "enum": ["fast", "deep"]},
        "limit": {"type": "integer", "default": 10},
        "tags": {"type": "array", "items": {"type": "string"}},
        "file-path": {"type": "string"},
        "class": {"type": "string"},
        "price": {"$ref": "#/$defs/Range"},
        "tree": {"$ref": "#/$defs/Node"},
        "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "options": {"type": "object", "additionalProperties": {"type": "boolean"}},
    },
    "required": ["query", "mode"],
    "additionalProperties": False,
    "$defs": {
        "Range": {
            "type": "object",
            "properties": {"min": {"type": "number"}, "max": {"type": "number"}},
            "required": ["min"],
        },
        "Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}},
    },
}


def test_schema_model_shows_the_servers_schema_and_validates() -> None:
    model = model_from_schema("search", SCHEMA)
    assert model.model_json_schema() == SCHEMA  # the LLM sees exactly this
    ok = model.model_validate(
        {
            "query": "kopi",
            "mode": "deep",
            "file-path": "/a",
            "class": "x",
            "price": {"min": 1},
            "tree": {"child": {"child": {}}},
            "options": {"fresh": True},
        }
    )
    assert ok.model_dump(by_alias=True, exclude_unset=True) == {
        "query": "kopi",
        "mode": "deep",
        "file-path": "/a",
        "class": "x",
        "price": {"min": 1.0},
        "tree": {"child": {"child": {}}},
        "options": {"fresh": True},
    }
    for bad in (
        {"mode": "fast"},
        {"query": "x", "mode": "slow"},
        {"query": "x", "mode": "fast", "price": {"max": 2}},
        {"query": "x", "mode": "fast", "unknown": 1},
        {"query": 5, "mode": "fast"},
        {"query": "x", "mode": "fast", "tags": "not-a-list"},
    ):
        with pytest.raises(ValidationError):
            model.model_validate(bad)


@pytest.mark.parametrize(
    "schema", [{}, {"type": "object"}, {"properties": {"x": {"$ref": "#/nowhere"}}}, "junk"]
)
def test_odd_schemas_never_break(schema: object) -> None:
    model = model_from_schema("odd", schema)  # type: ignore[arg-type]
    assert model.model_json_schema()["type"] == "object"
    model.model_validate({"x": 1})


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": {"x": 1}}}},
        {"type": "object", "properties": "junk"},
        {"type": "object", "properties": {"a": {"type": "object", "properties": ["x"]}}},
        {"$defs": [1, 2], "type": "object"},
        {"type": "object", "required": "a"},
    ],
)
def test_unreadable_schemas_become_open_arguments(schema: dict[str, object]) -> None:
    """A server's broken schema must not break the LLM request for every other tool."""
    model = model_from_schema("broken", schema)
    assert model.model_json_schema() == {
        "type": "object",
        "properties": {},
        "additionalProperties": True,
    }
    assert model.model_validate({"anything": 1}).model_dump(exclude_unset=True) == {"anything": 1}


def test_deeply_nested_schema_does_not_recurse_forever() -> None:
    deep: dict[str, object] = {"type": "string"}
    for _ in range(400):
        deep = {"type": "object", "properties": {"x": deep}}
    model = model_from_schema("deep", {"type": "object", "properties": {"d": deep}})
    model.model_validate({"d": {"x": {}}})


def test_root_ref_and_all_of_show_the_real_parameters() -> None:
    ref = model_from_schema(
        "r",
        {
            "$ref": "#/$defs/Args",
            "$defs": {
                "Args": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}},
                    "required": ["q"],
                }
            },
        },
    )
    assert ref.model_json_schema()["required"] == ["q"]
    with pytest.raises(ValidationError):
        ref.model_validate({})
    merged = model_from_schema(
        "m",
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"type": "string"}}},
            ]
        },
    )
    assert set(merged.model_json_schema()["properties"]) == {"a", "b"}
    with pytest.raises(ValidationError):
        merged.model_validate({"b": "x"})


def test_a_property_named_self_travels_under_its_own_name() -> None:
    model = model_from_schema(
        "s", {"type": "object", "properties": {"self": {"type": "string"}}, "required": ["self"]}
    )
    python_side = model.model_validate({"self": "me"}).model_dump(exclude_unset=True)
    assert "self" not in python_side  # so FunctionTool.acall(**python_side) cannot clash
    assert model.model_validate(python_side).model_dump(by_alias=True, exclude_unset=True) == {
        "self": "me"
    }


def test_target_shows_no_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "web": {"url": "https://user:pa55@example.org:8443/mcp?key=${K}"},
                "cli": {
                    "command": "tool",
                    "args": ["--api-key", "${MY_KEY}"],
                    "env": {"T": "${MY_KEY}"},
                },
            }
        },
    )
    config = load_mcp_config(path, {"K": "query-secret", "MY_KEY": "env-secret"})
    by = {s.name: s for s in config.servers}
    assert by["web"].target == "https://example.org:8443/mcp"
    assert by["cli"].target == "tool --api-key ${MY_KEY}"
    assert by["cli"].args[-1] == "env-secret"  # the process still gets the value
