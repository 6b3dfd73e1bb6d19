"""A new database holds exactly the rows `app/db/seed.py` defines: the level ladder, the
achievements and the default categories (with their fixed ids), icons included."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import text

from app.db import seed
from app.db.session import init_db
from tests.helpers.migrations import fresh_database


async def test_a_new_database_holds_the_seed_data(tmp_path: Path) -> None:
    async with fresh_database(tmp_path, "seed") as db:
        await init_db(db)
        async with db.engine.connect() as conn:
            levels = (
                await conn.execute(
                    text("SELECT name, required_points, sort_order, icon FROM levels")
                )
            ).all()
            achievements = (
                await conn.execute(
                    text(
                        "SELECT code, title, description, required_points, rule, icon "
                        "FROM achievements"
                    )
                )
            ).all()
            categories = (
                await conn.execute(
                    text(
                        "SELECT id, type, name, icon FROM finance_categories "
                        "WHERE business_id IS NULL"
                    )
                )
            ).all()
    assert sorted(map(tuple, levels)) == sorted(
        (lv.name, lv.required_points, lv.order, lv.icon) for lv in seed.LEVELS
    )
    assert sorted(map(tuple, achievements)) == sorted(
        (a.code, a.title, a.description, a.required_points, a.rule, a.icon)
        for a in seed.ACHIEVEMENTS
    )
    # SQLite keeps a UUID as 32 hex digits, PostgreSQL as a uuid.
    assert sorted((uuid.UUID(str(i)), t, n, ic) for i, t, n, ic in categories) == sorted(
        (c.id, c.type, c.name, c.icon) for c in seed.CATEGORIES
    )
