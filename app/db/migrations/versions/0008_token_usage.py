"""token usage per chat turn

Revision ID: 0008_token_usage
Revises: 0007_limits
Create Date: 2026-12-20 07:00:00.000000

An assistant message keeps the tokens its turn used (prompt and completion, summed over
the turn's model responses; NULL when the server reported none), and an index on
`created_at` serves the admins' usage per day, which reads a range of days across all
sessions.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_token_usage"
down_revision: str | None = "0007_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD/DROP COLUMN (SQLite has both), not a batch rebuild of what may be the
    # largest table (and see 0007 on rebuilds with foreign keys on).
    op.add_column("chat_messages", sa.Column("prompt_tokens", sa.Integer(), nullable=True))
    op.add_column("chat_messages", sa.Column("completion_tokens", sa.Integer(), nullable=True))
    op.create_index("ix_chat_messages_created_at", "chat_messages", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_chat_messages_created_at", table_name="chat_messages")
    op.drop_column("chat_messages", "completion_tokens")
    op.drop_column("chat_messages", "prompt_tokens")
