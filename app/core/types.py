"""Validated input types shared by every domain's schemas.

Text from clients is stripped, bounded and free of control characters (a NUL byte
cannot be stored in PostgreSQL text and has no business in a name) and of characters
that hide or reorder what is shown (zero-width and direction controls: a name on the
leaderboard must look like what it is); names must not look blank. Integers from
clients are bounded by each schema (amounts, points, ids), so the database never
overflows.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from annotated_types import GroupedMetadata
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

ZWJ = "\u200d"  # ZERO WIDTH JOINER: joins emoji (👩🏽 ZWJ 💻 is one emoji) and Indic conjuncts
_LINE_BREAKS = frozenset("\t\n\r\u2028\u2029\x85\x0b\x0c")
# Format characters free text may keep: ZWJ and ZERO WIDTH NON-JOINER shape Persian and
# Indic words, a SOFT HYPHEN only shows where a line breaks.
_MULTILINE_FORMAT_OK = frozenset("\u200c\u200d\u00ad")
# Characters that draw nothing although they are letters, symbols or marks (Hangul
# fillers, the blank Braille pattern, Khmer inherent vowels, the combining grapheme
# joiner): the "invisible name" of games and chats. Refused in one-line text.
BLANK_LOOKALIKES = frozenset("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5\u034f")
# A subdivision flag (England, Scotland, Wales): 🏴, tag letters, CANCEL TAG. Tag
# characters anywhere else are refused: invisible text a language model still reads.
_FLAG_TAG_SEQUENCE = re.compile(
    "\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{1,6}\U000e007f"
)
# Invisible characters that mean nothing in free text and arrive with pasted text (zero
# width space, BOM, word joiner, invisible operators, direction marks) or smuggle text
# to a model unseen (tag characters outside a flag): free text has them removed.
_DROPPED_FROM_FREE_TEXT = re.compile(
    f"({_FLAG_TAG_SEQUENCE.pattern})"
    "|[\u200b\u200e\u200f\u061c\u2060-\u2064\ufeff\U000e0000-\U000e007f]"
)
# This Python's Unicode database (unicodedata.unidata_version) predates the newest emoji
# (🩷, 🫨 ...), which it calls unassigned; in the emoji blocks they are let through.
_EMOJI_BLOCKS = (0x1F000, 0x1FAFF)


def _is_noncharacter(code: int) -> bool:
    """U+FDD0..U+FDEF and the last two code points of every plane (U+xFFFE, U+xFFFF)."""
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def _joins(text: str, i: int) -> bool:
    """A ZWJ that joins something: after an emoji, a modifier, a variation selector or
    a virama (symbol or mark), and before a letter, mark or symbol."""
    if i == 0 or i + 1 >= len(text):
        return False
    before = unicodedata.category(text[i - 1])
    after = unicodedata.category(text[i + 1])
    return before in ("So", "Sk", "Mn", "Mc") and after[0] in "LMS"


def text_problem(value: str, *, one_line: bool) -> str | None:
    """Why `value` is not acceptable text, or None.

    Both kinds refuse control characters (free text keeps tab and newlines), lone
    surrogates (no database can store them), noncharacters, direction controls (they
    make text display in another order than it is stored) and invisible format
    characters (zero-width spaces, BOMs, tag characters), keeping ZWJ (emoji
    sequences), valid flag tag sequences, and in free text ZWNJ and soft hyphens.
    One-line text (names, titles) also refuses blank fillers (U+3164 HANGUL FILLER,
    U+2800 BRAILLE PATTERN BLANK ...), private-use and unassigned code points, and a ZWJ
    that joins nothing.
    """
    text = _FLAG_TAG_SEQUENCE.sub("\U0001f3f4", value)  # the flag stays a symbol
    for i, char in enumerate(text):
        code = ord(char)
        category = unicodedata.category(char)
        if char in _LINE_BREAKS:
            if one_line:
                return "must be one line (no line breaks or tabs)"
            if char in "\t\n\r\u2028\u2029":
                continue
        if category == "Cc":
            return f"must not contain control characters (U+{code:04X})"
        if category == "Cs":
            return "must not contain lone surrogates (not valid Unicode text)"
        if _is_noncharacter(code):
            return f"must not contain noncharacters (U+{code:04X})"
        if category == "Cf":
            if char == ZWJ and (not one_line or _joins(text, i)):
                continue
            if not one_line and char in _MULTILINE_FORMAT_OK:
                continue
            return (
                "must not contain invisible or direction-changing formatting characters "
                f"(U+{code:04X})"
            )
        if one_line and char in BLANK_LOOKALIKES:
            return f"must not contain blank filler characters that look like space (U+{code:04X})"
        if one_line and category == "Co":
            return f"must not contain private-use characters (U+{code:04X})"
        if one_line and category == "Cn" and not _EMOJI_BLOCKS[0] <= code <= _EMOJI_BLOCKS[1]:
            return f"must not contain unassigned code points (U+{code:04X})"
    return None


def looks_blank(value: str) -> bool:
    """True if nothing in `value` draws: only white space, marks without a base (a lone
    variation selector), format characters and the blank look-alikes."""
    return not any(
        char not in BLANK_LOOKALIKES and unicodedata.category(char)[0] in "LNPS" for char in value
    )


def drop_invisible(value: object) -> object:
    """Free text without the invisible characters that carry no meaning there (see
    `_DROPPED_FROM_FREE_TEXT`): an owner cannot see them in what they pasted, so they are
    removed rather than refused. Valid flag tag sequences stay."""
    if not isinstance(value, str):
        return value
    return _DROPPED_FROM_FREE_TEXT.sub(lambda m: m.group(1) or "", value)


def no_unsafe_chars(value: str) -> str:
    """For one-line text: see `text_problem`."""
    problem = text_problem(value, one_line=True)
    if problem:
        raise ValueError(problem)
    return value


def _not_blank(value: str) -> str:
    if looks_blank(value):
        raise ValueError("must contain visible characters (it looks blank)")
    return value


def _no_unsafe_chars_multiline(value: str) -> str:
    problem = text_problem(value, one_line=False)
    if problem:
        raise ValueError(problem)
    return value


def _nfc_stripped(value: object) -> object:
    # Stripped before the length check, so "   " is empty and too short.
    return unicodedata.normalize("NFC", value).strip() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class SingleLine(GroupedMetadata):
    """One line of text, as `Annotated[str, SingleLine(60)]`: NFC, stripped, min..max
    characters, none of the characters `text_problem` refuses, and (unless it may be
    empty) not blank-looking. Pydantic unpacks it into the validators below."""

    max_length: int
    min_length: int = 1

    def __iter__(self) -> Iterator[object]:
        yield BeforeValidator(_nfc_stripped)
        yield from StringConstraints(min_length=self.min_length, max_length=self.max_length)
        yield AfterValidator(no_unsafe_chars)
        if self.min_length > 0:
            yield AfterValidator(_not_blank)


@dataclass(frozen=True, slots=True)
class MultiLine(GroupedMetadata):
    """Free text that may hold newlines and tabs, as `Annotated[str, MultiLine(500)]`:
    invisible characters that mean nothing removed (`drop_invisible`), then none of the
    characters `text_problem` refuses in free text (direction overrides and isolates,
    controls, noncharacters)."""

    max_length: int
    min_length: int = 0

    def __iter__(self) -> Iterator[object]:
        yield BeforeValidator(_nfc_stripped)
        yield BeforeValidator(drop_invisible)
        yield from StringConstraints(min_length=self.min_length, max_length=self.max_length)
        yield AfterValidator(_no_unsafe_chars_multiline)


PersonName = Annotated[str, SingleLine(100)]
SearchText = Annotated[str, SingleLine(100)]

# Pagination bounds: a negative, huge or non-integer value is a 422, never a 500.
Limit = Annotated[int, Field(ge=1, le=100, description="Page size (1-100)")]
Offset = Annotated[int, Field(ge=0, le=1_000_000, description="Items to skip")]
