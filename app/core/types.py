"""Validated input types shared by every domain's schemas.

Text from clients is stripped, bounded and free of control characters (a NUL byte
cannot be stored in PostgreSQL text and has no business in a name); integers from
clients stay within 64 bits so that the database never sees an overflow.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")

INT64_MAX = 2**63 - 1


def _no_control_chars(value: str) -> str:
    if _CONTROL_OR_NEWLINE.search(value):
        raise ValueError("must not contain control characters")
    return value


def _no_control_chars_multiline(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (other than newlines and tabs)")
    return value


def _nfc_stripped(value: object) -> object:
    # Stripped before the length check, so "   " is empty and too short.
    return unicodedata.normalize("NFC", value).strip() if isinstance(value, str) else value


def single_line(max_length: int, min_length: int = 1) -> Any:
    """A one-line text field: NFC, stripped, min..max characters, no control characters."""
    return Annotated[
        str,
        BeforeValidator(_nfc_stripped),
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(_no_control_chars),
    ]


def multi_line(max_length: int, min_length: int = 0) -> Any:
    """Free text that may hold newlines and tabs, but no other control characters."""
    return Annotated[
        str,
        BeforeValidator(_nfc_stripped),
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(_no_control_chars_multiline),
    ]


PersonName = single_line(100)
SearchText = single_line(100)

# Pagination bounds: a negative, huge or non-integer value is a 422, never a 500.
Limit = Annotated[int, Field(ge=1, le=100, description="Page size (1-100)")]
Offset = Annotated[int, Field(ge=0, le=1_000_000, description="Items to skip")]
