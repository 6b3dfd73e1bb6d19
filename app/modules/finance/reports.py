"""Finance reports: the summary of a period (totals, categories, a chart series) and the
CSV export, streamed in batches.

Reading, never writing: nothing here awards points or commits, so reports need no
caps and may run on any session.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import uuid
import weakref
from collections import defaultdict
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from time import perf_counter as time_now
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import UnprocessableError
from app.modules.finance.models import EntryType
from app.modules.finance.periods import DateRange, period_range
from app.modules.finance.repository import ExportRow, FinanceRepository
from app.modules.finance.schemas import CategoryTotal, FinanceSummary, Period, SeriesPoint

if TYPE_CHECKING:  # the entity the business service hands out
    from app.modules.business.service import BusinessProfile

DAY_BUCKETS_UP_TO = 92  # longer ranges are charted by month
EXPORT_MAX_ROWS = 100_000  # one export holds at most this many rows
EXPORT_MAX_DAYS = 366
EXPORT_BATCH_ROWS = 500  # rows read per short transaction, and sent as one chunk
EXPORT_STEP_ROWS = 100  # rows formatted between two looks at the event loop's other work
EXPORT_COLUMNS = ("occurred_at", "type", "amount", "category", "note", "id")


class FinanceReports:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = FinanceRepository(session)

    async def summary(
        self,
        business: BusinessProfile,
        period: Period,
        anchor: date | None,
        start: date | None,
        end: date | None,
    ) -> FinanceSummary:
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
        return FinanceSummary(
            period=period,
            start=span.start,
            end=span.end,
            timezone=business.timezone,
            granularity="month" if by_month else "day",
            income=income,
            expense=expense,
            net=income - expense,
            count=totals["income"][1] + totals["expense"][1],
            by_category=sorted(
                (
                    CategoryTotal(
                        category_id=cid,
                        category_name=names.get(cid, "?"),
                        type=EntryType(kind),
                        total=total,
                        count=count,
                    )
                    for (cid, kind), (total, count) in per_category.items()
                ),
                key=lambda c: -c.total,
            ),
            series=[
                SeriesPoint(
                    bucket=bucket,
                    income=per_bucket[(bucket, "income")],
                    expense=per_bucket[(bucket, "expense")],
                    net=per_bucket[(bucket, "income")] - per_bucket[(bucket, "expense")],
                )
                for bucket in _buckets(span, by_month)
            ],
        )

    def csv_export(
        self, business: BusinessProfile, start: date, end: date, max_rows: int = EXPORT_MAX_ROWS
    ) -> CsvExport:
        """The export of a date range (422 for a bad or too long one), not yet counted."""
        span = period_range("custom", start, start, end)
        if (span.end - span.start).days > EXPORT_MAX_DAYS:
            raise UnprocessableError(f"export at most {EXPORT_MAX_DAYS} days at a time")
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
