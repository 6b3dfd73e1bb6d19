"""Validated input types shared by every domain's schemas.

Text from clients is stripped, bounded and free of control characters (a NUL byte
cannot be stored in PostgreSQL text and has no business in a name). Integers from clients
are bounded by each schema (amounts, points, ids), so the database never overflows.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

# C0/C1 controls (tab and newlines allowed in multi-line text), lone surrogates (cannot be
# encoded, so no database can store them), and the bidirectional overrides that make
# text display in a different order than it is stored (spoofed names in lists).
_UNSAFE = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069"
_UNSAFE_MULTILINE = re.compile(f"[{_UNSAFE}]")
_UNSAFE_SINGLE_LINE = re.compile(f"[{_UNSAFE}\t\n\r\u2028\u2029]")


def no_unsafe_chars(value: str) -> str:
    """For one-line text: no control, line-break, surrogate or bidi-override characters."""
    if _UNSAFE_SINGLE_LINE.search(value):
        raise ValueError("must not contain control, line-break or invisible formatting characters")
    return value


def _no_unsafe_chars_multiline(value: str) -> str:
    if _UNSAFE_MULTILINE.search(value):
        raise ValueError(
            "must not contain control or invisible formatting characters "
            "(newlines and tabs are fine)"
        )
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
        AfterValidator(no_unsafe_chars),
    ]


def multi_line(max_length: int, min_length: int = 0) -> Any:
    """Free text that may hold newlines and tabs, but no other control characters."""
    return Annotated[
        str,
        BeforeValidator(_nfc_stripped),
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(_no_unsafe_chars_multiline),
    ]


PersonName = single_line(100)
SearchText = single_line(100)

# Pagination bounds: a negative, huge or non-integer value is a 422, never a 500.
Limit = Annotated[int, Field(ge=1, le=100, description="Page size (1-100)")]
Offset = Annotated[int, Field(ge=0, le=1_000_000, description="Items to skip")]
