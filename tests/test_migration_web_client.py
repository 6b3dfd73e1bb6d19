"""Migration 0006 (what the web client needs) on a database that has data, both ways."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, text

from app.db.migrate import current_revision, head_revision
from tests.helpers.migrations import (
    fresh_database,
    insert_old_user,
    migrate,
    rows,
    stored_ids,
    stored_time,
)

BEFORE = "0005_roadmap"


def _seed_before(conn: Connection) -> None:
    """An owner with a business and a transaction, and one level icon an admin chose."""
    user, business, tx = stored_ids(conn, 3)
    now = stored_time(conn, datetime(2025, 12, 1, 3, 0, tzinfo=UTC))
    insert_old_user(conn, user, now)
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
    async with fresh_database(tmp_path, "mig6") as db:
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, BEFORE)
            await conn.run_sync(_seed_before)
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, "head")
            assert await conn.run_sync(current_revision) == head_revision()
            payment = await conn.run_sync(rows, "SELECT payment_method FROM transactions")
            assert payment == [("CASH",)]
            labels = await conn.run_sync(rows, "SELECT stage_label FROM business_profiles")
            assert labels == [(None,)]
            levels = dict(await conn.run_sync(rows, "SELECT name, icon FROM levels"))
            assert levels["Pemula"] == "🌱" and levels["Juragan"] == "🏪"
            assert levels["Sultan"] == "lion"  # chosen by an admin: kept
            achievements = dict(await conn.run_sync(rows, "SELECT code, icon FROM achievements"))
            assert achievements["first_transaction"] == "✏️"
            assert achievements["points_1000"] == "🏆"
            icons = await conn.run_sync(
                rows, "SELECT icon FROM finance_categories WHERE business_id IS NULL"
            )
            assert len(icons) == 12 and all(icon and not icon.isascii() for (icon,) in icons)

        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, BEFORE, True)
            levels = dict(await conn.run_sync(rows, "SELECT name, icon FROM levels"))
            assert levels["Pemula"] == "seedling" and levels["Sultan"] == "lion"
            icons = await conn.run_sync(
                rows, "SELECT icon FROM finance_categories WHERE business_id IS NULL"
            )
            assert {icon for (icon,) in icons} == {None}
            # Every row is still there (a table rebuilt on SQLite must not cascade).
            assert await conn.run_sync(rows, "SELECT amount FROM transactions") == [(150000,)]
            assert len(await conn.run_sync(rows, "SELECT id FROM business_profiles")) == 1
        async with db.engine.begin() as conn:
            await conn.run_sync(migrate, "head")
            assert await conn.run_sync(current_revision) == head_revision()
