"""Migration tests: a database of their own, moved to a revision and back, with rows
written the way an older schema kept them (plain SQL, as that revision's code would)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Connection, text

from app.db.migrate import alembic_config
from app.db.session import Database
from tests.conftest import make_settings
from tests.helpers.databases import fresh_database_url


@asynccontextmanager
async def fresh_database(tmp_path: Path, name_hint: str) -> AsyncIterator[Database]:
    """A new, empty database of the suite's kind (no schema yet), disposed afterwards."""
    async with fresh_database_url(tmp_path, name_hint) as url:
        db = Database(make_settings(url, tmp_path))
        try:
            yield db
        finally:
            await db.dispose()


def migrate(conn: Connection, target: str, down: bool = False) -> None:
    (command.downgrade if down else command.upgrade)(alembic_config(conn), target)


def rows(conn: Connection, sql: str) -> list[Any]:
    return list(conn.execute(text(sql)).all())


def stored_ids(conn: Connection, count: int) -> list[str]:
    """New UUIDs as the database keeps them: 32 hex digits in SQLite, its own type in
    PostgreSQL."""
    ids = [uuid.uuid4() for _ in range(count)]
    return [u.hex if conn.dialect.name == "sqlite" else str(u) for u in ids]


def stored_time(conn: Connection, at: datetime) -> Any:
    """A UTC instant as the database keeps it: naive ISO text in SQLite."""
    if conn.dialect.name == "sqlite":
        return at.replace(tzinfo=None).isoformat(sep=" ")
    return at


def insert_old_user(conn: Connection, user_id: str, now: Any) -> None:
    """An owner's account row, written in plain SQL."""
    conn.execute(
        text(
            "INSERT INTO users (id, email, name, hashed_password, role, is_active,"
            " created_at, updated_at)"
            " VALUES (:id, 'lama@example.com', 'Bu Lama', 'x', 'user', true, :now, :now)"
        ),
        {"id": user_id, "now": now},
    )
