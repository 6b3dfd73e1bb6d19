"""Alembic environment.

Used two ways: by `init_db`/`telaten migrate`, which hand over an open connection in
`config.attributes["connection"]`; and by the `alembic` command line, which connects
on its own with the async engine from the settings.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from app.db.migrate import comparison_options


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **comparison_options(connection))
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    from app.core.config import get_settings
    from app.db.session import build_engine

    engine = build_engine(get_settings())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        raise SystemExit("Offline (--sql) migrations are not supported; run against a database.")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_with_own_engine())


_main()
