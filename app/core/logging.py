"""structlog setup for the app, uvicorn and SQLAlchemy.

Every record, ours or a library's, goes through one processor chain: context variables
(the request id, the user id), level, timestamp, secret redaction, then a renderer —
coloured console in development, one JSON object per line in production.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.types import EventDict, Processor

from app.core.config import Settings

REDACTED = "[redacted]"

# A key is secret if any of these words appears in it (case-insensitive).
_SECRET_KEY_RE = re.compile(
    r"pass(word|wd)?|secret|token|authori[sz]ation|api[_-]?key|cookie|credential|private[_-]?key",
    re.IGNORECASE,
)
# Passwords inside URLs in free text: scheme://user:password@host
_URL_PASSWORD_RE = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:)[^\s@/]+@", re.IGNORECASE
)
# Bearer credentials in free text (an Authorization header logged as a string).
_BEARER_RE = re.compile(r"(?P<head>\bbearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
# Submitted values quoted in pydantic errors ("input_value='hunter2'"): whatever field it
# was, the value stays out of the log.
_INPUT_VALUE_RE = re.compile(r"(?P<head>input_value=).*?(?=, input_type=|$)", re.MULTILINE)

# Keys that structlog itself uses; never treated as secrets.
_STRUCTURAL_KEYS = frozenset({"event", "level", "logger", "timestamp", "exception", "request_id"})


def _scrub_text(text: str) -> str:
    text = _URL_PASSWORD_RE.sub(r"\g<head>" + REDACTED + "@", text)
    text = _INPUT_VALUE_RE.sub(r"\g<head>" + REDACTED, text)
    return _BEARER_RE.sub(r"\g<head>" + REDACTED, text)


def _redact_value(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and _SECRET_KEY_RE.search(k)
                else _redact_value(v, depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, depth + 1) for v in value)
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Replace values of secret-looking keys and credentials embedded in text."""
    for key in list(event_dict):
        if key in _STRUCTURAL_KEYS:
            if key in ("event", "exception") and isinstance(event_dict[key], str):
                event_dict[key] = _scrub_text(event_dict[key])
            continue
        if _SECRET_KEY_RE.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def _drop_color_message(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    # uvicorn passes a coloured copy of its message as an extra; the renderer colours.
    event_dict.pop("color_message", None)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted, not when configured
    (test runners and process managers may swap the stream after start-up)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(settings: Settings) -> None:
    """Route structlog and stdlib logging (uvicorn, SQLAlchemy, ...) through one chain.

    Safe to call more than once (tests build several apps); the last call wins.
    """
    level = logging.getLevelName(settings.LOG_LEVEL)
    renderer: Processor
    if settings.log_json:
        final: list[Processor] = [
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(),
            # Plain tracebacks: the rich formatter would print local variables,
            # which can hold passwords and tokens.
            exception_formatter=structlog.dev.plain_traceback,
        )
        final = [redact_secrets, renderer]

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)

    for name in ("uvicorn", "uvicorn.error", "fastapi"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
        lib.setLevel(level)
    # Our middleware writes one access line per request; uvicorn's would duplicate it.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    # SQL statements only when explicitly debugging; parameters are never logged
    # (the engine is built with hide_parameters=True).
    quiet = (
        "sqlalchemy",
        "aiosqlite",
        "asyncio",
        "alembic.runtime.plugins",
        "httpx",
        "httpx2",
        "httpcore",
        "mcp",
    )
    for name in quiet:
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
        lib.setLevel(logging.WARNING if level < logging.WARNING else level)

    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
