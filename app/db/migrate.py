"""Alembic, driven from code: the app, the CLI and the tests share these helpers.

The migration scripts live in `app/db/migrations`; no `alembic.ini` in the working
directory is needed. `alembic.ini` at the repository root exists only so that
developers can run `alembic revision --autogenerate -m "..."` as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write our own column types into new migrations with their import."""
    from app.db.types import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("from app.db.types import UTCDateTime")
        return "UTCDateTime()"
    return False


def comparison_options(connection: Connection) -> dict[str, Any]:
    """Options shared by migrations and the models-match check."""
    from app.db.models import metadata

    return {
        "target_metadata": metadata,
        "render_item": _render_item,
        "compare_type": True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        "render_as_batch": connection.dialect.name == "sqlite",
    }


def upgrade_to_head(connection: Connection) -> None:
    """Run inside `AsyncConnection.run_sync`: migrate on the caller's connection."""
    command.upgrade(alembic_config(connection), "head")


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def schema_differences(connection: Connection) -> list[Any]:
    """What autogenerate would put in a new migration; empty when models == migrations."""
    options = comparison_options(connection)
    context = MigrationContext.configure(connection, opts=options)
    return compare_metadata(context, options["target_metadata"])
