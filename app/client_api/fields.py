"""Input types for what the web client sends the way it sends it.

They only translate the client's spelling into ours (letter case, blank fields, digits
in a string, line breaks in a one-line text); every bound is the native schema's.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field

from app.core.types import SingleLine
from app.modules.gamification.schemas import Points

_DIGITS = re.compile(r"^\s*\d{1,13}\s*$")


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _joined_lines(value: Any) -> Any:
    """A textarea's text as one line: every run of white space becomes one space."""
    return " ".join(value.split()) if isinstance(value, str) else value


def _whole_number(value: Any) -> Any:
    """A whole number from a JSON number (`Number(input)` in the client: a fraction is
    refused, never rounded) or a string of digits (the admin forms' text inputs)."""
    if isinstance(value, bool):
        return value  # refused as not an integer by the strict type
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _DIGITS.match(value):
        return int(value)
    return value


_T = TypeVar("_T")

# An enum of lower-case (upper-case) values, accepted in any case: `Lower[EntryType]`.
Lower = Annotated[_T, BeforeValidator(_lower)]
Upper = Annotated[_T, BeforeValidator(_upper)]
# A field the form may leave blank (blank means not given):
# `BlankIsNone[Annotated[str, SingleLine(80)]]`.
BlankIsNone = Annotated[_T | None, BeforeValidator(_blank_is_none)]
# Text from a textarea, stored as one line: every run of white space becomes one space
# before the one-line rules apply (`Annotated[str, SingleLine(500, min_length=0), JoinedLines]`).
JoinedLines = BeforeValidator(_joined_lines)


# Points as the admin forms send them: 5000, 5000.0 or "5000", from 0 to 10^12.
PointsInput = Annotated[Points, BeforeValidator(_whole_number)]
# An emoji (or any short text the client draws as an icon).
Icon = BlankIsNone[Annotated[str, SingleLine(200)]]
# A label the client shows but the server does not use (kept bounded all the same).
Ignored = Annotated[str | None, Field(default=None, max_length=200)]
