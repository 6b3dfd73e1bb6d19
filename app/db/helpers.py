"""Small helpers shared by services and repositories."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ConflictError


async def commit_or_conflict(session: AsyncSession, message: str) -> None:
    """Commit; a unique-constraint violation (a parallel write won) becomes a 409."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise ConflictError(message) from None


async def flush_or_conflict(session: AsyncSession, message: str) -> None:
    """Flush; a unique-constraint violation (a parallel write won) becomes a 409."""
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise ConflictError(message) from None


def escape_like(text: str) -> str:
    """Make `text` match literally inside a LIKE pattern (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
