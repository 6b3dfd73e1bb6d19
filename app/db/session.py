"""Async engine and sessions (a request's comes from `get_db` in app/api/deps.py), and
`init_db`.

One `Database` per app (in its `AppContext`), so tests can run several apps on
different databases in one process. PostgreSQL goes through asyncpg with a bounded
pool that never hands out a connection the server has closed; SQLite goes through
aiosqlite in WAL mode with foreign keys on.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings

log = structlog.stdlib.get_logger(__name__)

# Any constant works; it only has to be the same for every process that migrates.
_MIGRATION_LOCK_KEY = 0x7E1A7E4


def build_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.DATABASE_URL)
    common: dict[str, Any] = {"hide_parameters": True}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = create_async_engine(
            url, connect_args={"timeout": settings.DB_CONNECT_TIMEOUT}, **common
        )
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    server_settings = {"application_name": "telaten-backend"}
    connect_args: dict[str, Any] = {
        "timeout": settings.DB_CONNECT_TIMEOUT,
        "server_settings": server_settings,
    }
    if settings.DB_STATEMENT_TIMEOUT_MS:
        server_settings["statement_timeout"] = str(settings.DB_STATEMENT_TIMEOUT_MS)
        # Client-side bound too, for a server (or network) that stops answering.
        connect_args["command_timeout"] = settings.DB_STATEMENT_TIMEOUT_MS / 1000 + 5
    engine = create_async_engine(
        url,
        pool_size=settings.DB_POOL_SIZE,
        max_overflow=settings.DB_MAX_OVERFLOW,
        pool_timeout=settings.DB_POOL_TIMEOUT,
        pool_recycle=1800,
        connect_args=connect_args,
        **common,
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Hand out no connection the server has closed (a restart, a failover,
    pg_terminate_backend): the pool drops it and takes another, so the request never
    sees the dead one. asyncpg marks a connection closed as soon as the event loop
    reads the server's goodbye, which costs nothing at checkout; `pool_pre_ping` would
    pay a round trip on every checkout for the same protection."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """The engine and session factory of one app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = build_engine(settings)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def ping(self, within: float = 3.0) -> None:
        """Raise if the database does not answer `SELECT 1` within `within` seconds."""
        async with asyncio.timeout(within):
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def init_db(db: Database) -> None:
    """Bring the schema to the newest migration (creates every table on first start).

    Several workers may start at once: PostgreSQL serialises them with an advisory lock
    held for the migration transaction, SQLite with a file lock next to the database.
    """
    from app.db.migrate import upgrade_to_head

    if db.is_sqlite:
        async with _file_lock(_sqlite_lock_path(db)), db.engine.begin() as conn:
            await conn.run_sync(upgrade_to_head)
    else:
        async with db.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            await conn.run_sync(upgrade_to_head)
    log.info("database_ready", dialect=db.engine.dialect.name)


def _sqlite_lock_path(db: Database) -> Path:
    database = db.engine.url.database
    if not database or database == ":memory:":
        return db.settings.DATA_DIR / "migrate.lock"
    return Path(database).with_suffix(".migrate.lock")


@asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive flock, waited for in a thread so the event loop keeps running."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
