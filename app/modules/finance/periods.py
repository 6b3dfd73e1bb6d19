"""Date ranges of the finance reports and filters, in a business's own calendar.

Pure rules, no database: which days a period covers ("day", "week" from Monday,
"month", "year", or a checked "custom" range), and the UTC instants that bound them in
a time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.core.errors import UnprocessableError

MAX_RANGE_DAYS = 3660


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
            raise UnprocessableError("period=custom needs both start and end (YYYY-MM-DD)")
        if end < start:
            raise UnprocessableError("end must not be before start")
        if (end - start).days > MAX_RANGE_DAYS:
            raise UnprocessableError(f"the range may span at most {MAX_RANGE_DAYS} days")
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
