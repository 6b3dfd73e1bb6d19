"""Finance rules: categories, transactions, summaries, and the points for diligence.

Recording a transaction earns `TRANSACTION_POINTS`, at most
`TRANSACTION_DAILY_CAP` times a day (the business's local day), so a burst of tiny
entries cannot farm points; deleting a transaction takes its points back. Both happen
in the same database transaction as the entry itself.
"""

from __future__ import annotations

import asyncio
import builtins
import csv
import io
import re
import uuid
import weakref
from collections import defaultdict
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from time import perf_counter as time_now
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from app.core.errors import ConflictError, DomainError, NotFoundError, PermissionDeniedError
from app.db.helpers import commit_or_conflict
from app.db.types import utcnow
from app.modules.business.models import BusinessProfile
from app.modules.finance.models import FinanceCategory, Transaction
from app.modules.finance.repository import ExportRow, FinanceRepository, TransactionFilters
from app.modules.finance.schemas import (
    CategoryCreate,
    CategoryUpdate,
    TransactionCreate,
    TransactionUpdate,
)
from app.modules.gamification.service import (
    TRANSACTION_DELETED,
    TRANSACTION_RECORDED,
    GamificationService,
)

TRANSACTION_POINTS = 5
TRANSACTION_DAILY_CAP = 10  # awarded transactions per local day: at most 50 points a day
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)
DAY_BUCKETS_UP_TO = 92  # longer ranges are charted by month
MAX_RANGE_DAYS = 3660
CATEGORY_NOT_FOUND = "Category not found"
CATEGORY_IN_USE = "The category is in use; move its transactions to another category first"
NO_SUCH_CATEGORY = "category_id: no such category (use GET /finance/categories)"
EXPORT_MAX_ROWS = 100_000  # one export holds at most this many rows
EXPORT_MAX_DAYS = 366
EXPORT_BATCH_ROWS = 500  # rows read per short transaction, and sent as one chunk
EXPORT_STEP_ROWS = 100  # rows formatted between two looks at the event loop's other work
EXPORT_COLUMNS = ("occurred_at", "type", "amount", "category", "note", "id")


def _invalid(detail: str) -> DomainError:
    return DomainError(detail, status_code=422)


@dataclass(frozen=True)
class RecordedTransaction:
    entry: Transaction
    category_name: str
    points: int
    unlocked: list[str]  # codes of the achievements it unlocked


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date  # inclusive

    def utc_bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        begin = datetime.combine(self.start, time.min, tz).astimezone(UTC)
        finish = datetime.combine(self.end + timedelta(days=1), time.min, tz).astimezone(UTC)
        return begin, finish


def period_range(period: str, anchor: date, start: date | None, end: date | None) -> DateRange:
    if period == "custom":
        if start is None or end is None:
            raise _invalid("period=custom needs both start and end (YYYY-MM-DD)")
        if end < start:
            raise _invalid("end must not be before start")
        if (end - start).days > MAX_RANGE_DAYS:
            raise _invalid(f"the range may span at most {MAX_RANGE_DAYS} days")
        return DateRange(start, end)
    if period == "day":
        return DateRange(anchor, anchor)
    if period == "week":
        monday = anchor - timedelta(days=anchor.weekday())
        return DateRange(monday, monday + timedelta(days=6))
    if period == "month":
        first = anchor.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return DateRange(first, following - timedelta(days=1))
    return DateRange(anchor.replace(month=1, day=1), anchor.replace(month=12, day=31))


class FinanceService:
    def __init__(self, session: AsyncSession, *, daily_cap: int = TRANSACTION_DAILY_CAP) -> None:
        self.session = session
        self.repo = FinanceRepository(session)
        self.daily_cap = daily_cap

    # --- categories ---------------------------------------------------------------------

    async def categories(
        self, business: BusinessProfile, type_: str | None
    ) -> list[FinanceCategory]:
        return await self.repo.categories(business.id, type_)

    async def create_category(
        self, business: BusinessProfile, data: CategoryCreate
    ) -> FinanceCategory:
        key = data.name.casefold()
        if await self.repo.name_taken(business.id, data.type, key, None):
            raise ConflictError(f"A {data.type} category named '{data.name}' already exists")
        category = FinanceCategory(
            business_id=business.id, type=data.type, name=data.name, name_key=key, icon=data.icon
        )
        self.session.add(category)
        await commit_or_conflict(
            self.session, f"A {data.type} category named '{data.name}' already exists"
        )
        return category

    async def update_category(
        self, business: BusinessProfile, category_id: uuid.UUID, data: CategoryUpdate
    ) -> FinanceCategory:
        category = await self._own_category(business, category_id)
        if data.name is not None:
            key = data.name.casefold()
            if await self.repo.name_taken(business.id, category.type, key, category.id):
                raise ConflictError(
                    f"A {category.type} category named '{data.name}' already exists"
                )
            category.name, category.name_key = data.name, key
        if "icon" in data.model_fields_set:
            category.icon = data.icon
        await commit_or_conflict(
            self.session,
            "A category with this name already exists",
            not_found=CATEGORY_NOT_FOUND,  # deleted by a parallel request since we read it
        )
        return category

    async def delete_category(self, business: BusinessProfile, category_id: uuid.UUID) -> None:
        category = await self._own_category(business, category_id)
        used = await self.repo.category_usage(category.id)
        if used:
            raise ConflictError(
                f"The category is used by {used} transaction(s); "
                "move them to another category first"
            )
        # A transaction recorded with it or moved to it at this very moment wins: the
        # foreign key refuses the delete. Of two parallel deletes, one finds no row: 404.
        try:
            deleted = await self.repo.delete_category(business.id, category.id)
        except IntegrityError:
            await self.session.rollback()
            raise ConflictError(CATEGORY_IN_USE) from None
        if not deleted:
            await self.session.rollback()
            raise NotFoundError(CATEGORY_NOT_FOUND)
        await commit_or_conflict(self.session, CATEGORY_IN_USE)

    async def category_by_name(
        self, business: BusinessProfile, type_: str, name_or_id: str
    ) -> FinanceCategory:
        """A visible category of `type_` by id or by name, ignoring case (for the
        advisor, which knows names); 422 listing the names there are."""
        categories = await self.repo.categories(business.id, type_)
        wanted = name_or_id.strip().casefold()
        for category in categories:
            if str(category.id) == wanted or category.name_key == wanted:
                return category
        names = ", ".join(c.name for c in categories)
        raise _invalid(f"No {type_} category '{name_or_id}'. The {type_} categories are: {names}")

    async def _own_category(
        self, business: BusinessProfile, category_id: uuid.UUID
    ) -> FinanceCategory:
        category = await self.repo.visible_category(business.id, category_id)
        if category is None:
            raise NotFoundError(CATEGORY_NOT_FOUND)
        if category.business_id is None:
            raise PermissionDeniedError("Default categories cannot be changed or deleted")
        return category

    async def _usable_category(
        self, business: BusinessProfile, category_id: uuid.UUID, type_: str
    ) -> FinanceCategory:
        category = await self.repo.visible_category(business.id, category_id)
        if category is None:
            raise _invalid(NO_SUCH_CATEGORY)
        if category.type != type_:
            raise _invalid(
                f"category_id: '{category.name}' is an {category.type} category, not {type_}"
            )
        return category

    # --- transactions -------------------------------------------------------------------

    def _when(self, business: BusinessProfile, value: datetime | None) -> datetime:
        if value is None:
            return utcnow()
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo(business.timezone))
        value = value.astimezone(UTC)
        if value < EARLIEST or value > utcnow() + MAX_FUTURE:
            raise _invalid("occurred_at must be between 2000-01-01 and tomorrow")
        return value

    async def create(
        self, business: BusinessProfile, data: TransactionCreate
    ) -> RecordedTransaction:
        """Record a transaction and award its points, in one database transaction."""
        category = await self._usable_category(business, data.category_id, data.type)
        game = GamificationService(self.session)
        await game.lock_business(business.id)  # one business's awards, one at a time
        entry = Transaction(
            business_id=business.id,
            type=data.type,
            amount=data.amount,
            category_id=category.id,
            note=data.note,
            payment_method=data.payment_method,
            occurred_at=self._when(business, data.occurred_at),
        )
        self.session.add(entry)
        try:
            await self.session.flush()
        except IntegrityError:  # the category was deleted a moment ago
            await self.session.rollback()
            raise _invalid(NO_SUCH_CATEGORY) from None
        awarded_today = await game.events_today(
            business.id, TRANSACTION_RECORDED, await game.daily_cap_start(business.id)
        )
        points = TRANSACTION_POINTS if awarded_today < self.daily_cap else 0
        award = await game.award_points(business.id, TRANSACTION_RECORDED, points, ref_id=entry.id)
        await self.session.commit()
        return RecordedTransaction(entry, category.name, points, award.unlocked)

    async def list(
        self, business: BusinessProfile, filters: TransactionFilters, limit: int, offset: int
    ) -> tuple[builtins.list[tuple[Transaction, str]], int]:
        return await self.repo.list(business.id, filters, limit, offset)

    @staticmethod
    def local_date(business: BusinessProfile, instant: datetime | None) -> date | None:
        """The business-local date of an instant (a time without an offset is already
        business time): a client's local midnight of 5 December, 2025-12-04T17:00Z, is
        5 December in Jakarta."""
        if instant is None:
            return None
        tz = ZoneInfo(business.timezone)
        return (instant.astimezone(tz) if instant.tzinfo else instant).date()

    def local_range(
        self, business: BusinessProfile, start: date | None, end: date | None
    ) -> tuple[datetime | None, datetime | None]:
        if start and end and end < start:
            raise _invalid("end must not be before start")
        tz = ZoneInfo(business.timezone)
        begin = DateRange(start, start).utc_bounds(tz)[0] if start else None
        finish = DateRange(end, end).utc_bounds(tz)[1] if end else None
        return begin, finish

    async def get(
        self, business: BusinessProfile, transaction_id: uuid.UUID
    ) -> tuple[Transaction, str]:
        found = await self.repo.get(business.id, transaction_id)
        if found is None:
            raise NotFoundError("Transaction not found")
        return found

    async def update(
        self, business: BusinessProfile, transaction_id: uuid.UUID, data: TransactionUpdate
    ) -> tuple[Transaction, str]:
        entry, name = await self.get(business, transaction_id)
        new_type = data.type or entry.type
        if data.category_id is not None or data.type is not None:
            category = await self._usable_category(
                business, data.category_id or entry.category_id, new_type
            )
            entry.category_id, name = category.id, category.name
        entry.type = new_type
        if data.amount is not None:
            entry.amount = data.amount
        if data.note is not None:
            entry.note = data.note
        if data.payment_method is not None:
            entry.payment_method = data.payment_method
        if data.occurred_at is not None:
            entry.occurred_at = self._when(business, data.occurred_at)
        try:
            await self.session.commit()
        except StaleDataError:  # deleted by a parallel request since we read it
            await self.session.rollback()
            raise NotFoundError("Transaction not found") from None
        except IntegrityError:  # its new category was deleted by a parallel request
            await self.session.rollback()
            raise _invalid(NO_SUCH_CATEGORY) from None
        return entry, name

    async def delete(self, business: BusinessProfile, transaction_id: uuid.UUID) -> None:
        """Delete, and take back the points the entry earned (exactly once).

        The row is deleted first, by a statement whose row count says whether this
        request is the one that deleted it: parallel deletes of one entry get one 204
        and 404s, and the points are taken back once. The ledger always records the
        deletion (amount 0 if it had earned nothing), so it knows how many entries exist.
        """
        game = GamificationService(self.session)
        await game.lock_business(business.id)
        if not await self.repo.delete_transaction(business.id, transaction_id):
            await self.session.rollback()
            raise NotFoundError("Transaction not found")
        earned = await game.points_for(transaction_id)
        await game.award_points(
            business.id, TRANSACTION_DELETED, -max(earned, 0), ref_id=transaction_id
        )
        await self.session.commit()

    # --- reports ------------------------------------------------------------------------

    async def summary(
        self,
        business: BusinessProfile,
        period: str,
        anchor: date | None,
        start: date | None,
        end: date | None,
    ) -> dict[str, Any]:
        tz = ZoneInfo(business.timezone)
        span = period_range(period, anchor or datetime.now(tz).date(), start, end)
        begin, finish = span.utc_bounds(tz)
        by_month = (span.end - span.start).days + 1 > DAY_BUCKETS_UP_TO
        offset = datetime.combine(span.start, time.min, tz).utcoffset() or timedelta(0)
        groups = await self.repo.grouped(
            business.id,
            begin,
            finish,
            business.timezone,
            int(offset.total_seconds() // 3600),
            by_month,
        )
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        per_category: dict[tuple[uuid.UUID, str], list[int]] = defaultdict(lambda: [0, 0])
        per_bucket: dict[tuple[date, str], int] = defaultdict(int)
        for bucket, kind, category_id, total, count in groups:
            totals[kind][0] += total
            totals[kind][1] += count
            per_category[(category_id, kind)][0] += total
            per_category[(category_id, kind)][1] += count
            per_bucket[(bucket, kind)] += total
        names = await self.repo.category_names({cid for cid, _ in per_category})
        income, expense = totals["income"][0], totals["expense"][0]
        return {
            "period": period,
            "start": span.start,
            "end": span.end,
            "timezone": business.timezone,
            "granularity": "month" if by_month else "day",
            "income": income,
            "expense": expense,
            "net": income - expense,
            "count": totals["income"][1] + totals["expense"][1],
            "by_category": sorted(
                (
                    {
                        "category_id": cid,
                        "category_name": names.get(cid, "?"),
                        "type": kind,
                        "total": total,
                        "count": count,
                    }
                    for (cid, kind), (total, count) in per_category.items()
                ),
                key=lambda c: -c["total"],
            ),
            "series": [
                {
                    "bucket": bucket,
                    "income": per_bucket[(bucket, "income")],
                    "expense": per_bucket[(bucket, "expense")],
                    "net": per_bucket[(bucket, "income")] - per_bucket[(bucket, "expense")],
                }
                for bucket in _buckets(span, by_month)
            ],
        }

    # --- CSV export ---------------------------------------------------------------------

    def csv_export(
        self, business: BusinessProfile, start: date, end: date, max_rows: int = EXPORT_MAX_ROWS
    ) -> CsvExport:
        """The export of a date range (422 for a bad or too long one), not yet counted."""
        span = period_range("custom", start, start, end)
        if (span.end - span.start).days > EXPORT_MAX_DAYS:
            raise _invalid(f"export at most {EXPORT_MAX_DAYS} days at a time")
        begin, finish = span.utc_bounds(ZoneInfo(business.timezone))
        return CsvExport(business.id, business.timezone, begin, finish, max_rows)

    async def count_export(self, export: CsvExport) -> CsvExport:
        """Count the range's rows (up to one past the cap) before anything is streamed,
        so the response's headers can say whether the file will be cut short."""
        count = await self.repo.count_in_range(
            export.business_id, export.begin, export.finish, export.max_rows + 1
        )
        return replace(export, truncated=count > export.max_rows)


@dataclass(frozen=True)
class CsvExport:
    """One business's transactions in a date range, to stream as CSV."""

    business_id: uuid.UUID
    timezone: str
    begin: datetime  # UTC, inclusive
    finish: datetime  # UTC, exclusive
    max_rows: int
    truncated: bool = False  # the range held more than max_rows when it was counted


async def csv_chunks(
    sessionmaker: async_sessionmaker[AsyncSession],
    export: CsvExport,
    *,
    batch_rows: int = EXPORT_BATCH_ROWS,
) -> AsyncGenerator[bytes, None]:
    """The export as UTF-8 chunks: a byte-order mark (spreadsheet programs need it to
    read non-ASCII text such as category names and notes correctly) and the header,
    then one chunk per batch of rows in time order.

    Each batch is read in a short transaction of its own, on a connection that goes back
    to the pool before the chunk is yielded: a stream that waits for a slow client holds
    no connection, and memory holds one batch. Batches follow each other by keyset on
    (occurred_at, id), so a row that exists for the whole export is in it exactly once;
    one recorded or deleted meanwhile is in it or not depending on where the export was.

    Reading and formatting rows is CPU work on the event loop: the exports of a process
    take turns (one batch at a time), and a batch is formatted in small steps with the
    loop's other work in between, so requests of other users wait for one step at most.
    """
    yield ("\ufeff" + ",".join(EXPORT_COLUMNS) + "\r\n").encode()
    tz = ZoneInfo(export.timezone)
    after: tuple[datetime, uuid.UUID] | None = None
    left = export.max_rows
    while left > 0:
        size = min(batch_rows, left)
        async with _export_turn():
            began = time_now()
            parts, count, last = [], 0, None
            async with (
                sessionmaker() as session,
                aclosing(
                    FinanceRepository(session).export_batch(
                        export.business_id,
                        export.begin,
                        export.finish,
                        after,
                        size,
                        EXPORT_STEP_ROWS,
                    )
                ) as batch,
            ):
                async for rows in batch:
                    parts.append(_csv_lines(rows, tz))
                    count, last = count + len(rows), rows[-1]
                    await asyncio.sleep(0)  # the event loop's other work between two steps
            # Then as long again for everything else: the exports of a process never
            # take more than about half of its time, however many run.
            await asyncio.sleep(time_now() - began)
        if parts:
            yield "".join(parts).encode()
        if count < size or last is None:
            return
        left -= count
        after = (last[0], last[5])


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _export_turn() -> asyncio.Lock:
    """The lock the exports running on this event loop take turns with."""
    loop = asyncio.get_running_loop()
    lock = _turns.get(loop)
    if lock is None:
        lock = _turns[loop] = asyncio.Lock()
    return lock


def _csv_lines(rows: Sequence[ExportRow], tz: ZoneInfo) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(
        (at.astimezone(tz).isoformat(), kind, amount, safe_cell(category), safe_cell(note), id_)
        for at, kind, amount, category, note, id_ in rows
    )
    return out.getvalue()


def _buckets(span: DateRange, by_month: bool) -> list[date]:
    out, day = [], span.start
    if by_month:
        day = day.replace(day=1)
        while day <= span.end:
            out.append(day)
            day = (day + timedelta(days=32)).replace(day=1)
        return out
    while day <= span.end:
        out.append(day)
        day += timedelta(days=1)
    return out


# A cell that starts with one of these is a formula to a spreadsheet program; some fold
# the full-width forms to ASCII first.
_FORMULA_START = "=+\\-@\t\r\uff1d\uff0b\uff0d\uff20"
# Where a spreadsheet program may start a new cell or line when it reads our file with
# another list separator than the comma (Indonesian Excel splits on ";"), or ignores the
# quoting: whatever follows one of these, after spaces and quotes, starts a cell too.
_CELL_SPLIT = ";,|\t\r\n"
_MAY_START_FORMULA = re.compile(f"[{_FORMULA_START}]")
_FORMULA_AT_CELL_START = re.compile(
    f'(?:^|(?<=[{_CELL_SPLIT}]))(?:[^\\S\\t\\r\\n]|")*(?=[{_FORMULA_START}])'
)


def safe_cell(text: str) -> str:
    """Text no spreadsheet program runs as a formula, whichever separator it splits the
    line on: a quote before each formula character that could start a cell (the start
    of the text, or after a separator, spaces and quotes). The text stays readable:
    `x;=HYPERLINK(...)` becomes `x;'=HYPERLINK(...)`."""
    if not _MAY_START_FORMULA.search(text):  # most text: nothing to do
        return text
    return _FORMULA_AT_CELL_START.sub(lambda m: m.group(0) + "'", text)
