"""Small helpers shared by services and repositories."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result, Table, inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import SQLModel

from app.core.errors import ConflictError, NotFoundError


def rows_touched(result: Result[Any]) -> int:
    """How many rows an UPDATE, DELETE or INSERT touched. `AsyncSession.execute` is
    typed as returning `Result`; for these statements it is a `CursorResult`, which
    counts them (0 where the driver does not say)."""
    return cast("CursorResult[Any]", result).rowcount or 0


def table_of(model: type[SQLModel]) -> Table:
    """A table model's `Table`, for Core statements (SQLModel sets `__table__` without
    declaring it)."""
    return cast(Table, inspect(model).local_table)


async def commit_or_conflict(
    session: AsyncSession, message: str, *, not_found: str | None = None
) -> None:
    """Commit; a unique-constraint violation (a parallel write won) becomes a 409.

    With `not_found`, an UPDATE of a row that a parallel request deleted since it was
    read (SQLAlchemy's StaleDataError: "expected to update 1 row; 0 were matched")
    becomes a 404 with that message.
    """
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise ConflictError(message) from None
    except StaleDataError:
        await session.rollback()
        if not_found is None:
            raise
        raise NotFoundError(not_found) from None


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
