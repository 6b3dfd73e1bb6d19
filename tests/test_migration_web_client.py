"""Migration 0006 (what the web client needs) on a database that has data, both ways."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Connection, text

from app.db.migrate import alembic_config, current_revision, head_revision
from app.db.session import Database
from tests.conftest import make_settings
from tests.helpers.databases import fresh_database_url

BEFORE = "0005_roadmap"


def _migrate(conn: Connection, target: str, down: bool = False) -> None:
    (command.downgrade if down else command.upgrade)(alembic_config(conn), target)


def _rows(conn: Connection, sql: str) -> list[Any]:
    return list(conn.execute(text(sql)).all())


def _seed_before(conn: Connection) -> None:
    """An owner with a business and a transaction, and one level icon an admin chose."""
    # As each database keeps a UUID: 32 hex digits in SQLite, its own type in PostgreSQL.
    user, business, tx = (
        u.hex if conn.dialect.name == "sqlite" else str(u) for u in (uuid.uuid4() for _ in "123")
    )
    at = datetime(2025, 12, 1, 3, 0, tzinfo=UTC)
    now: Any = at.replace(tzinfo=None).isoformat(sep=" ") if conn.dialect.name == "sqlite" else at
    conn.execute(
        text(
            "INSERT INTO users (id, email, name, hashed_password, role, is_active,"
            " created_at, updated_at)"
            " VALUES (:id, 'lama@example.com', 'Bu Lama', 'x', 'user', true, :now, :now)"
        ),
        {"id": user, "now": now},
    )
    conn.execute(
        text(
            "INSERT INTO business_profiles (id, user_id, name, category, description, stage,"
            " target_market, primary_goal, timezone, ai_context, total_points, created_at,"
            " updated_at) VALUES (:id, :user, 'Warung Lama', 'Kuliner', '', 'growth', '', '',"
            " 'Asia/Jakarta', '{}', 0, :now, :now)"
        ),
        {"id": business, "user": user, "now": now},
    )
    category = conn.execute(
        text("SELECT id FROM finance_categories WHERE type = 'income' AND name = 'Penjualan'")
    ).scalar_one()
    conn.execute(
        text(
            "INSERT INTO transactions (id, business_id, type, amount, category_id, note,"
            " occurred_at, created_at) VALUES (:id, :b, 'income', 150000, :c, '', :now, :now)"
        ),
        {"id": tx, "b": business, "c": category, "now": now},
    )
    conn.execute(text("UPDATE levels SET icon = 'lion' WHERE name = 'Sultan'"))


async def test_0006_keeps_old_rows_and_gives_seeded_data_emoji_and_back(tmp_path: Path) -> None:
    async with fresh_database_url(tmp_path, "mig6") as url:
        db = Database(make_settings(url, tmp_path))
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(_migrate, BEFORE)
                await conn.run_sync(_seed_before)
            async with db.engine.begin() as conn:
                await conn.run_sync(_migrate, "head")
                assert await conn.run_sync(current_revision) == head_revision()
                payment = await conn.run_sync(_rows, "SELECT payment_method FROM transactions")
                assert payment == [("CASH",)]
                labels = await conn.run_sync(_rows, "SELECT stage_label FROM business_profiles")
                assert labels == [(None,)]
                levels = dict(await conn.run_sync(_rows, "SELECT name, icon FROM levels"))
                assert levels["Pemula"] == "🌱" and levels["Juragan"] == "🏪"
                assert levels["Sultan"] == "lion"  # chosen by an admin: kept
                achievements = dict(
                    await conn.run_sync(_rows, "SELECT code, icon FROM achievements")
                )
                assert achievements["first_transaction"] == "✏️"
                assert achievements["points_1000"] == "🏆"
                icons = await conn.run_sync(
                    _rows, "SELECT icon FROM finance_categories WHERE business_id IS NULL"
                )
                assert len(icons) == 12 and all(icon and not icon.isascii() for (icon,) in icons)

            async with db.engine.begin() as conn:
                await conn.run_sync(_migrate, BEFORE, True)
                levels = dict(await conn.run_sync(_rows, "SELECT name, icon FROM levels"))
                assert levels["Pemula"] == "seedling" and levels["Sultan"] == "lion"
                icons = await conn.run_sync(
                    _rows, "SELECT icon FROM finance_categories WHERE business_id IS NULL"
                )
                assert {icon for (icon,) in icons} == {None}
                # Every row is still there (a table rebuilt on SQLite must not cascade).
                assert await conn.run_sync(_rows, "SELECT amount FROM transactions") == [(150000,)]
                assert len(await conn.run_sync(_rows, "SELECT id FROM business_profiles")) == 1
            async with db.engine.begin() as conn:
                await conn.run_sync(_migrate, "head")
                assert await conn.run_sync(current_revision) == head_revision()
        finally:
            await db.dispose()
