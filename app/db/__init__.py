"""The database layer. Importing it first names every constraint the models declare
without a name, by one convention (`NAMING_CONVENTION`), before any model exists."""

from sqlmodel import SQLModel

# PostgreSQL's own default names, so the databases migrated before the convention and
# those migrated after it agree; SQLite (which names nothing itself) gets the same
# names, which its batch migrations need to drop or change a constraint. CHECK
# constraints are always named by hand (ck_<table>_<what>).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION
