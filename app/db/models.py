"""The one place that imports every table model, so `metadata` is complete.

Alembic's autogenerate and the models-match-migrations test read `metadata` from here;
a new domain module adds its `models` import below.
"""

from sqlmodel import SQLModel

metadata = SQLModel.metadata

__all__ = ["metadata"]
