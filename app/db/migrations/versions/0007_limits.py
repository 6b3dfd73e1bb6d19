"""usage limits: rate events for every throttle, usage slots, time zone changes

Revision ID: 0007_limits
Revises: 0006_web_client
Create Date: 2026-12-06 07:00:00.000000

The login-failure table already counted more than failed logins (accounts created per
address, wrong current passwords): it becomes `rate_events`, which chat turns and email
changes count in too (rows are kept). `usage_slots` holds the places of per-user limits
on parallel streams. Business profiles remember when their time zone last changed, so
daily point caps cannot be reopened by changing it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.types import UTCDateTime

revision: str = "0007_limits"
down_revision: str | None = "0006_web_client"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_login_failures_key_at", table_name="login_failures")
    op.rename_table("login_failures", "rate_events")
    op.create_index("ix_rate_events_key_at", "rate_events", ["key", "created_at"], unique=False)

    op.create_table(
        "usage_slots",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.Uuid(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", "slot"),
        sa.UniqueConstraint("holder"),
    )
    op.create_index("ix_usage_slots_expires_at", "usage_slots", ["expires_at"], unique=False)

    # A plain ADD/DROP COLUMN, not a batch rebuild: on SQLite rebuilding business_profiles
    # with foreign keys on would cascade into every table that refers to it.
    op.add_column(
        "business_profiles", sa.Column("timezone_changed_at", UTCDateTime(), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("business_profiles", "timezone_changed_at")

    op.drop_index("ix_usage_slots_expires_at", table_name="usage_slots")
    op.drop_table("usage_slots")

    op.drop_index("ix_rate_events_key_at", table_name="rate_events")
    op.rename_table("rate_events", "login_failures")
    op.create_index(
        "ix_login_failures_key_at", "login_failures", ["key", "created_at"], unique=False
    )
