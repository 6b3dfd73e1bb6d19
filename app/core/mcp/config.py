"""Reading `mcp.json` (README, "External tools over MCP"), Claude-Desktop style.

    {"mcpServers": {"fs": {"command": "npx", "args": [...], "env": {"TOKEN": "${FS_TOKEN}"}},
                    "search": {"url": "https://example.org/mcp", "headers": {...}}}}

`${VAR}` and `${VAR:-default}` expand in command, args, env, url and headers. A missing
file means no servers. A broken file, or a broken server entry, is reported once per
problem (naming the server and the key) and everything else still loads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

Transport = Literal["stdio", "sse", "streamable-http"]
TRANSPORTS: tuple[Transport, ...] = ("stdio", "sse", "streamable-http")
# How long one tool call (and a keep-alive ping) may take, and how long a connection may
# take to come up: start the process or open the stream, initialize, list the tools. The
# two differ by nature (a stdio server's start includes its interpreter's imports), so
# each has its own key; mcp.json sets them per server, the settings set the defaults.
DEFAULT_CALL_TIMEOUT_SECONDS = 30.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 60.0
MAX_TIMEOUT_SECONDS = 600.0
SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,48}$")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_KNOWN_KEYS = {
    "command", "args", "env", "cwd", "url", "transport", "headers",
    "enabled", "timeout", "connect_timeout", "tools", "exclude_tools", "prefix", "description",
}  # fmt: skip


@dataclass(frozen=True)
class ServerConfig:
    name: str
    transport: Transport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_CALL_TIMEOUT_SECONDS  # per call and ping
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS  # per connection attempt
    tools: frozenset[str] | None = None  # allow-list; None = all
    exclude_tools: frozenset[str] = frozenset()
    prefix: str | None = None  # always prefix tool names with this
    # Where it runs, for people and the admin API: built from the entry as written, so
    # ${VAR} values never show, and without URL credentials or query strings.
    target: str = ""


@dataclass
class McpConfig:
    servers: list[ServerConfig]
    errors: list[str]  # one readable line per problem
    readable: bool = True  # False: the file itself is broken (keep what is running)


class _ConfigError(ValueError):
    pass


def expand(value: str, environ: Mapping[str, str], where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ and (environ[name] or default is None):
            return environ[name]
        if default is not None:
            return default
        raise _ConfigError(f"{where} uses ${{{name}}}, which is not set")

    return _VAR_RE.sub(replace, value)


@dataclass(frozen=True)
class Timeouts:
    """The timeouts an entry gets when it does not set its own."""

    call: float = DEFAULT_CALL_TIMEOUT_SECONDS
    connect: float = DEFAULT_CONNECT_TIMEOUT_SECONDS


def load_mcp_config(
    path: Path, environ: Mapping[str, str] | None = None, defaults: Timeouts = Timeouts()
) -> McpConfig:
    environ = os.environ if environ is None else environ
    if not path.exists():
        return McpConfig([], [])
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return McpConfig([], [f"{path}: cannot be read as JSON ({exc})"], readable=False)
    servers_doc = document.get("mcpServers") if isinstance(document, dict) else None
    if not isinstance(servers_doc, dict):
        return McpConfig(
            [], [f"{path}: expected an object with an 'mcpServers' object"], readable=False
        )
    servers, errors = [], []
    for name, entry in servers_doc.items():
        try:
            server = _parse_server(name, entry, environ, defaults)
        except _ConfigError as exc:
            errors.append(f"{path}: server '{name}': {exc}")
            continue
        if server is not None:
            servers.append(server)
    return McpConfig(servers, errors)


def _parse_server(
    name: str, entry: Any, environ: Mapping[str, str], defaults: Timeouts
) -> ServerConfig | None:
    if not SERVER_NAME_RE.match(name):
        raise _ConfigError("the name must be 1-48 letters, digits, '_' or '-'")
    if not isinstance(entry, dict):
        raise _ConfigError("the entry must be an object")
    unknown = sorted(set(entry) - _KNOWN_KEYS)
    if unknown:
        raise _ConfigError(f"unknown key(s) {', '.join(unknown)}")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _ConfigError("'enabled' must be true or false")
    if not enabled:
        return None

    def text(key: str) -> str | None:
        value = entry.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise _ConfigError(f"'{key}' must be a non-empty string")
        return expand(value, environ, f"'{key}'")

    def string_map(key: str) -> dict[str, str]:
        value = entry.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise _ConfigError(f"'{key}' must be an object of strings")
        return {k: expand(v, environ, f"'{key}.{k}'") for k, v in value.items()}

    def name_set(key: str) -> frozenset[str] | None:
        value = entry.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _ConfigError(f"'{key}' must be a list of tool names")
        return frozenset(value)

    command, url = text("command"), text("url")
    given = entry.get("transport")
    if given is not None and given not in TRANSPORTS:
        raise _ConfigError(f"'transport' must be one of {', '.join(TRANSPORTS)}")
    transport: Transport
    if given is not None:
        transport = TRANSPORTS[TRANSPORTS.index(given)]
    else:
        if command:
            transport = "stdio"
        elif url:
            transport = "sse" if url.rstrip("/").endswith("/sse") else "streamable-http"
        else:
            raise _ConfigError("needs 'command' (stdio) or 'url' (HTTP)")
    if transport == "stdio" and not command:
        raise _ConfigError("'command' is required for the stdio transport")
    if transport != "stdio":
        if not url:
            raise _ConfigError(f"'url' is required for the {transport} transport")
        if not url.startswith(("http://", "https://")):
            raise _ConfigError("'url' must start with http:// or https://")
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _ConfigError("'args' must be a list of strings")
    timeout = _seconds(entry, "timeout", defaults.call)
    connect_timeout = _seconds(entry, "connect_timeout", defaults.connect)
    prefix_value = entry.get("prefix", False)
    if isinstance(prefix_value, bool):
        prefix = name if prefix_value else None
    elif isinstance(prefix_value, str) and SERVER_NAME_RE.match(prefix_value):
        prefix = prefix_value
    else:
        raise _ConfigError("'prefix' must be true, false, or a short name")
    if transport == "stdio":
        target = " ".join([entry["command"], *args])
    else:
        parts = urlsplit(entry["url"])
        host = parts.hostname or ""
        target = urlunsplit(
            (parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, "", "")
        )
    return ServerConfig(
        name=name,
        target=target,
        transport=transport,
        command=command,
        args=tuple(expand(a, environ, f"'args[{i}]'") for i, a in enumerate(args)),
        env=string_map("env"),
        cwd=text("cwd"),
        url=url,
        headers=string_map("headers"),
        timeout=timeout,
        connect_timeout=connect_timeout,
        tools=name_set("tools"),
        exclude_tools=name_set("exclude_tools") or frozenset(),
        prefix=prefix,
    )


def _seconds(entry: dict[str, Any], key: str, default: float) -> float:
    value = entry.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT_SECONDS
    ):
        raise _ConfigError(f"'{key}' must be a number of seconds between 0 and 600")
    return float(value)
