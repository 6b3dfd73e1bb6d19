"""Queries on finance categories and transactions."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Date, Select, cast, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.helpers import escape_like, rows_touched, table_of
from app.modules.finance.models import FinanceCategory, Transaction


class ExportRow(NamedTuple):
    occurred_at: datetime
    type: str
    amount: int
    category: str
    note: str
    id: uuid.UUID


@dataclass
class TransactionFilters:
    type: str | None = None
    category_id: uuid.UUID | None = None
    start: datetime | None = None  # inclusive, UTC
    end: datetime | None = None  # exclusive, UTC
    text: str | None = None


class FinanceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- categories ---------------------------------------------------------------------

    async def categories(self, business_id: uuid.UUID, type_: str | None) -> list[FinanceCategory]:
        stmt = select(FinanceCategory).where(
            or_(
                col(FinanceCategory.business_id).is_(None),
                col(FinanceCategory.business_id) == business_id,
            )
        )
        if type_:
            stmt = stmt.where(col(FinanceCategory.type) == type_)
        stmt = stmt.order_by(
            col(FinanceCategory.type),
            col(FinanceCategory.business_id).is_not(None),
            col(FinanceCategory.name),
        )
        return list((await self.session.execute(stmt)).scalars())

    async def visible_category(
        self, business_id: uuid.UUID, category_id: uuid.UUID
    ) -> FinanceCategory | None:
        """A system default or one of this business's own; anyone else's is invisible."""
        category = await self.session.get(FinanceCategory, category_id)
        if category is None or category.business_id not in (None, business_id):
            return None
        return category

    async def name_taken(
        self, business_id: uuid.UUID, type_: str, name_key: str, exclude: uuid.UUID | None
    ) -> bool:
        stmt = select(col(FinanceCategory.id)).where(
            col(FinanceCategory.type) == type_,
            col(FinanceCategory.name_key) == name_key,
            or_(
                col(FinanceCategory.business_id).is_(None),
                col(FinanceCategory.business_id) == business_id,
            ),
        )
        if exclude is not None:
            stmt = stmt.where(col(FinanceCategory.id) != exclude)
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def delete_category(self, business_id: uuid.UUID, category_id: uuid.UUID) -> bool:
        """Delete one of the business's own categories; False if it was already gone."""
        result = await self.session.execute(
            delete(FinanceCategory).where(
                col(FinanceCategory.id) == category_id,
                col(FinanceCategory.business_id) == business_id,
            )
        )
        return rows_touched(result) == 1

    async def delete_transaction(self, business_id: uuid.UUID, transaction_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(Transaction).where(
                col(Transaction.id) == transaction_id,
                col(Transaction.business_id) == business_id,
            )
        )
        return rows_touched(result) == 1

    async def category_usage(self, category_id: uuid.UUID) -> int:
        stmt = (
            select(func.count())
            .select_from(Transaction)
            .where(col(Transaction.category_id) == category_id)
        )
        return (await self.session.scalar(stmt)) or 0

    # --- transactions -------------------------------------------------------------------

    def _filtered(self, business_id: uuid.UUID, f: TransactionFilters) -> Select[Transaction, str]:
        stmt = select(Transaction, col(FinanceCategory.name)).join(
            FinanceCategory, col(FinanceCategory.id) == col(Transaction.category_id)
        )
        stmt = stmt.where(col(Transaction.business_id) == business_id)
        if f.type:
            stmt = stmt.where(col(Transaction.type) == f.type)
        if f.category_id:
            stmt = stmt.where(col(Transaction.category_id) == f.category_id)
        if f.start:
            stmt = stmt.where(col(Transaction.occurred_at) >= f.start)
        if f.end:
            stmt = stmt.where(col(Transaction.occurred_at) < f.end)
        if f.text:
            pattern = f"%{escape_like(f.text.lower())}%"
            stmt = stmt.where(
                or_(
                    func.lower(col(Transaction.note)).like(pattern, escape="\\"),
                    func.lower(col(FinanceCategory.name)).like(pattern, escape="\\"),
                )
            )
        return stmt

    async def list(
        self, business_id: uuid.UUID, f: TransactionFilters, limit: int, offset: int
    ) -> tuple[list[tuple[Transaction, str]], int]:
        stmt = self._filtered(business_id, f)
        total = await self.session.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = await self.session.execute(
            stmt.order_by(
                col(Transaction.occurred_at).desc(),
                col(Transaction.created_at).desc(),
                col(Transaction.id),
            )
            .limit(limit)
            .offset(offset)
        )
        return [(t, name) for t, name in rows.all()], total or 0

    async def get(
        self, business_id: uuid.UUID, transaction_id: uuid.UUID
    ) -> tuple[Transaction, str] | None:
        row = (
            await self.session.execute(
                self._filtered(business_id, TransactionFilters()).where(
                    col(Transaction.id) == transaction_id
                )
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def count_in_range(
        self, business_id: uuid.UUID, start: datetime, end: datetime, at_most: int
    ) -> int:
        """How many transactions the range holds, counting no further than `at_most`
        (an index range scan that stops there)."""
        rows = (
            select(col(Transaction.id))
            .where(self._in_range(business_id, start, end))
            .limit(at_most)
        )
        return await self.session.scalar(select(func.count()).select_from(rows.subquery())) or 0

    async def export_batch(
        self,
        business_id: uuid.UUID,
        start: datetime,
        end: datetime,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
        part_rows: int,
    ) -> AsyncGenerator[Sequence[ExportRow], None]:
        """The next `limit` rows of the range in (occurred_at, id) order after the key
        `after` (keyset pagination: each batch starts where the previous ended, with no
        OFFSET to skip), in parts of `part_rows`.

        A Core query of plain columns: no ORM objects, and each part's values are
        converted (text to datetime and UUID on SQLite) only when the caller takes it,
        so the caller can let the event loop run other work between parts."""
        transactions = table_of(Transaction)
        categories = table_of(FinanceCategory)
        t, c = transactions.c, categories.c
        stmt = (
            select(t.occurred_at, t.type, t.amount, c.name, t.note, t.id)
            .select_from(transactions.join(categories, c.id == t.category_id))
            .where(t.business_id == business_id, t.occurred_at >= start, t.occurred_at < end)
        )
        if after is not None:
            at, last_id = after
            # Written so the (business_id, occurred_at) index bounds the scan.
            stmt = stmt.where(t.occurred_at >= at, or_(t.occurred_at > at, t.id > last_id))
        result = await self.session.execute(stmt.order_by(t.occurred_at, t.id).limit(limit))
        for part in result.partitions(part_rows):
            yield part  # type: ignore[misc]  # Rows are tuples

    # --- summary ------------------------------------------------------------------------

    async def grouped(
        self,
        business_id: uuid.UUID,
        start: datetime,
        end: datetime,
        tz: str,
        offset_hours: int,
        by_month: bool,
    ) -> builtins.list[tuple[date, str, uuid.UUID, int, int]]:
        """(bucket, type, category id, sum, count) for the range, in ONE pass over the
        business's rows; totals, the category breakdown and the series are all sums of
        these groups (at most buckets x types x categories rows)."""
        bucket = self._bucket(tz, offset_hours, by_month).label("bucket")
        rows = await self.session.execute(
            select(
                bucket,
                col(Transaction.type),
                col(Transaction.category_id),
                func.sum(col(Transaction.amount)),
                func.count(),
            )
            .where(self._in_range(business_id, start, end))
            .group_by(bucket, col(Transaction.type), col(Transaction.category_id))
        )
        out = []
        for day, kind, category_id, total, count in rows.all():
            key = day if isinstance(day, date) else date.fromisoformat(str(day)[:10])
            out.append((key, kind, category_id, int(total or 0), int(count)))
        return out

    async def category_names(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        if not ids:
            return {}
        rows = await self.session.execute(
            select(col(FinanceCategory.id), col(FinanceCategory.name)).where(
                col(FinanceCategory.id).in_(ids)
            )
        )
        return dict(rows.all())

    def _bucket(self, tz: str, offset_hours: int, by_month: bool) -> Any:
        """The local calendar day (or month) of `occurred_at`, computed in the database."""
        column = col(Transaction.occurred_at)
        if self.session.get_bind().dialect.name == "postgresql":
            local = func.timezone(tz, column)
            return cast(func.date_trunc("month" if by_month else "day", local), Date)
        # SQLite keeps UTC text; the supported zones have fixed offsets and no DST.
        shift = f"{offset_hours:+d} hours"
        # date() rounds fractional seconds to milliseconds, which would move 23:59:59.9995
        # to the next day: cut to whole seconds first.
        seconds = func.strftime("%Y-%m-%d %H:%M:%S", column)
        return func.strftime("%Y-%m-01", seconds, shift) if by_month else func.date(seconds, shift)

    @staticmethod
    def _in_range(business_id: uuid.UUID, start: datetime, end: datetime) -> ColumnElement[bool]:
        return (
            (col(Transaction.business_id) == business_id)
            & (col(Transaction.occurred_at) >= start)
            & (col(Transaction.occurred_at) < end)
        )
