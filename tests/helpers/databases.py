"""Which database the suite runs on, and throw-away databases for tests.

`TEST_DATABASE_URL` selects the server: unset (or SQLite) runs on SQLite files in a
temporary directory; a `postgresql+asyncpg://` URL runs on that PostgreSQL server,
where every database the suite needs is created fresh and dropped afterwards, so runs
never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "").strip()


def suite_backend() -> str:
    if not TEST_DATABASE_URL:
        return "sqlite"
    return make_url(TEST_DATABASE_URL).get_backend_name()


def _pg_admin_dsn(url: URL) -> str:
    """A plain libpq DSN for asyncpg, to the server's maintenance database."""
    return url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )


@asynccontextmanager
async def fresh_database_url(tmp_dir: Path, name_hint: str = "t") -> AsyncIterator[str]:
    """Yield the URL of a new, empty database of the suite's kind; drop it afterwards."""
    if suite_backend() == "sqlite":
        path = tmp_dir / f"{name_hint}-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    base = make_url(TEST_DATABASE_URL)
    name = f"telaten_test_{name_hint}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_pg_admin_dsn(base))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(_pg_admin_dsn(base))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
