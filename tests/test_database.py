"""Migrations, init_db and the session dependency on the suite's database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from alembic import command
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import get_db
from app.db.migrate import alembic_config, current_revision, head_revision, schema_differences
from app.db.session import Database, init_db
from app.main import create_app
from tests.conftest import asgi_client, make_settings
from tests.helpers.accounts import API, new_account
from tests.helpers.databases import fresh_database_url
from tests.helpers.migrations import fresh_database
from tests.helpers.server import clean_env, telaten


async def test_migrations_match_the_models(tmp_path: Path) -> None:
    """`alembic revision --autogenerate` would find nothing to add."""
    async with fresh_database(tmp_path, "models") as db:
        await init_db(db)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(current_revision) == head_revision()
            assert await conn.run_sync(schema_differences) == []


async def test_every_migration_goes_down_and_up_again(tmp_path: Path) -> None:
    """upgrade to head, downgrade to nothing, upgrade again: every downgrade undoes its
    upgrade exactly (no table, index or type left behind to break the next upgrade),
    and the schema at the end is still the models'."""

    def round_trip(conn: Connection) -> list[str]:
        config = alembic_config(conn)
        command.upgrade(config, "head")
        command.downgrade(config, "base")
        left = sorted(name for name in inspect(conn).get_table_names() if name != "alembic_version")
        command.upgrade(config, "head")
        return left

    async with fresh_database(tmp_path, "roundtrip") as db:
        async with db.engine.begin() as conn:
            assert await conn.run_sync(round_trip) == []
        async with db.engine.connect() as conn:
            assert await conn.run_sync(current_revision) == head_revision()
            assert await conn.run_sync(schema_differences) == []


async def test_init_db_is_idempotent_and_safe_concurrently(tmp_path: Path) -> None:
    async with fresh_database_url(tmp_path, "concurrent") as url:
        dbs = [Database(make_settings(url, tmp_path)) for _ in range(3)]
        try:
            await asyncio.gather(*(init_db(db) for db in dbs))
            await init_db(dbs[0])
            async with dbs[0].engine.connect() as conn:
                assert await conn.run_sync(current_revision) == head_revision()
        finally:
            await asyncio.gather(*(db.dispose() for db in dbs))


@pytest.mark.slow
async def test_cli_migrate_from_several_processes_at_once(tmp_path: Path) -> None:
    async with fresh_database_url(tmp_path, "cli") as url:
        env = clean_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "d"))
        results = await asyncio.gather(
            *(asyncio.to_thread(telaten, "migrate", env=env, cwd=tmp_path) for _ in range(3))
        )
        assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
        db = Database(make_settings(url, tmp_path))
        try:
            async with db.engine.connect() as conn:
                assert await conn.run_sync(current_revision) == head_revision()
        finally:
            await db.dispose()


async def test_get_db_rolls_back_on_error(app: FastAPI, client: httpx.AsyncClient) -> None:
    """A request that fails half-way leaves nothing behind."""
    async with app.state.context.db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS probe_rollback (v INTEGER)"))
    try:

        async def write_then_fail(session: AsyncSession = Depends(get_db)) -> None:
            await session.execute(text("INSERT INTO probe_rollback (v) VALUES (1)"))
            raise ValueError("fail after the write")

        app.add_api_route("/__test__/write-then-fail", write_then_fail, methods=["POST"])
        r = await client.post("/__test__/write-then-fail")
        assert r.status_code == 500
        async with app.state.context.db.engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM probe_rollback"))).scalar_one()
        assert count == 0
    finally:
        async with app.state.context.db.engine.begin() as conn:
            await conn.execute(text("DROP TABLE probe_rollback"))


@pytest.mark.postgres_only
async def test_postgres_pool_settings_apply(app: FastAPI) -> None:
    engine = app.state.context.db.engine
    async with engine.connect() as conn:
        name = (await conn.execute(text("SHOW application_name"))).scalar_one()
    assert name == "telaten-backend"


@pytest.mark.postgres_only
async def test_pooled_connections_the_server_closed_are_not_handed_out(
    database_url: str, tmp_path: Path
) -> None:
    """The server ends every pooled connection (a restart, a failover, an operator's
    pg_terminate_backend): the next requests get fresh connections, none an error."""
    app = create_app(make_settings(database_url, tmp_path, DB_POOL_SIZE=4))
    async with LifespanManager(app, startup_timeout=60), asgi_client(app) as c:
        owner = await new_account(c)
        responses = await asyncio.gather(
            *(c.get(f"{API}/auth/me", headers=owner.headers) for _ in range(8))
        )
        assert {r.status_code for r in responses} == {200}
        async with app.state.context.db.engine.connect() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'telaten-backend' "
                    "AND datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        await asyncio.sleep(0.5)  # the servers' goodbyes reach this event loop
        responses = await asyncio.gather(
            *(c.get(f"{API}/auth/me", headers=owner.headers) for _ in range(8))
        )
        assert [r.status_code for r in responses] == [200] * 8
