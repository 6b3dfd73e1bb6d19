"""what the web client needs: payment method, stage label, emoji icons for seeded data

Revision ID: 0006_web_client
Revises: 0005_roadmap
Create Date: 2026-12-02 01:20:00.000000

Transactions get a payment method (CASH for every existing row), business profiles the
stage label the owner picked, refresh tokens a count of their renewals within a reuse
grace window. The seeded levels and achievements had words for icons and
the default categories none; the web client draws icons as text, so they become emoji
(only where the seeded value is still there: an icon an admin chose stays).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db import seed

revision: str = "0006_web_client"
down_revision: str | None = "0005_roadmap"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAYMENT_METHODS = ("CASH", "BANK_TRANSFER", "E_WALLET", "DEBIT_CARD", "CREDIT_CARD")

# The seeded rows of 0004_business, by name or code: (the word it had, its emoji).
LEVEL_ICONS = {lv.name: (lv.first_icon, lv.icon) for lv in seed.LEVELS}
ACHIEVEMENT_ICONS = {a.code: (a.first_icon, a.icon) for a in seed.ACHIEVEMENTS}
# The default categories of 0004_business, (type, name) -> icon.
CATEGORY_ICONS = {(c.type, c.name): c.icon for c in seed.CATEGORIES}

_levels = sa.table("levels", sa.column("name", sa.String), sa.column("icon", sa.String))
_achievements = sa.table("achievements", sa.column("code", sa.String), sa.column("icon", sa.String))
_categories = sa.table(
    "finance_categories",
    sa.column("business_id", sa.Uuid),
    sa.column("type", sa.String),
    sa.column("name", sa.String),
    sa.column("icon", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("payment_method", sa.String(length=16), server_default="CASH", nullable=False)
        )
        batch_op.create_check_constraint(
            "ck_transaction_payment_method",
            "payment_method IN ({})".format(", ".join(f"'{m}'" for m in PAYMENT_METHODS)),
        )
    op.add_column(
        "business_profiles", sa.Column("stage_label", sa.String(length=20), nullable=True)
    )
    op.add_column(
        "refresh_tokens", sa.Column("reissues", sa.Integer(), server_default="0", nullable=False)
    )

    for key, icons in _seeded_icons():
        for name, (word, emoji) in icons.items():
            op.execute(_seeded(key, name, word).values(icon=emoji))
    for (kind, name), emoji in CATEGORY_ICONS.items():
        op.execute(_default_category(kind, name, _categories.c.icon.is_(None)).values(icon=emoji))


def downgrade() -> None:
    for (kind, name), emoji in CATEGORY_ICONS.items():
        op.execute(_default_category(kind, name, _categories.c.icon == emoji).values(icon=None))
    for key, icons in _seeded_icons():
        for name, (word, emoji) in icons.items():
            op.execute(_seeded(key, name, emoji).values(icon=word))

    # Not in batch mode: on SQLite that rebuilds the table, and dropping the old
    # business_profiles (with foreign keys on) would cascade into every table referring
    # to it. A plain DROP COLUMN (SQLite 3.35+) leaves the rows alone. Rebuilding
    # transactions is safe: no table refers to it.
    op.drop_column("business_profiles", "stage_label")
    op.drop_column("refresh_tokens", "reissues")
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_constraint("ck_transaction_payment_method", type_="check")
        batch_op.drop_column("payment_method")


def _seeded_icons() -> list[tuple[sa.ColumnElement[str], dict[str, tuple[str, str]]]]:
    return [(_levels.c.name, LEVEL_ICONS), (_achievements.c.code, ACHIEVEMENT_ICONS)]


def _seeded(key: sa.ColumnElement[str], name: str, icon: str) -> sa.Update:
    """The seeded row of that name or code, while it has that icon (an icon an admin
    chose since stays)."""
    table = key.table
    return table.update().where(key == name, table.c.icon == icon)


def _default_category(kind: str, name: str, condition: sa.ColumnElement[bool]) -> sa.Update:
    c = _categories.c
    return _categories.update().where(
        c.business_id.is_(None), c.type == kind, c.name == name, condition
    )
