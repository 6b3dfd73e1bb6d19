"""The finance periods (app/modules/finance/periods.py), without a database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from app.core.errors import DomainError
from app.modules.finance.periods import MAX_RANGE_DAYS, DateRange, period_range

THURSDAY = date(2026, 12, 3)


@pytest.mark.parametrize(
    ("period", "anchor", "start", "end"),
    [
        ("day", THURSDAY, THURSDAY, THURSDAY),
        ("week", THURSDAY, date(2026, 11, 30), date(2026, 12, 6)),  # Monday to Sunday
        ("week", date(2026, 11, 30), date(2026, 11, 30), date(2026, 12, 6)),
        ("week", date(2026, 12, 6), date(2026, 11, 30), date(2026, 12, 6)),
        ("month", THURSDAY, date(2026, 12, 1), date(2026, 12, 31)),
        ("month", date(2028, 2, 10), date(2028, 2, 1), date(2028, 2, 29)),  # leap year
        ("month", date(2026, 2, 28), date(2026, 2, 1), date(2026, 2, 28)),
        ("month", date(2026, 1, 31), date(2026, 1, 1), date(2026, 1, 31)),
        ("year", THURSDAY, date(2026, 1, 1), date(2026, 12, 31)),
    ],
)
def test_calendar_periods(period: str, anchor: date, start: date, end: date) -> None:
    assert period_range(period, anchor, None, None) == DateRange(start, end)


def test_a_custom_range_is_taken_as_given() -> None:
    span = period_range("custom", THURSDAY, date(2026, 1, 5), date(2026, 3, 9))
    assert span == DateRange(date(2026, 1, 5), date(2026, 3, 9))


@pytest.mark.parametrize(
    ("start", "end", "why"),
    [
        (None, date(2026, 1, 1), "needs both start and end"),
        (date(2026, 1, 1), None, "needs both start and end"),
        (date(2026, 1, 2), date(2026, 1, 1), "must not be before start"),
        (date(2000, 1, 1), date(2010, 12, 31), f"at most {MAX_RANGE_DAYS} days"),
    ],
)
def test_bad_custom_ranges_are_422(start: date | None, end: date | None, why: str) -> None:
    with pytest.raises(DomainError) as refused:
        period_range("custom", THURSDAY, start, end)
    assert refused.value.status_code == 422 and why in str(refused.value.detail)


def test_utc_bounds_follow_the_time_zone() -> None:
    """A Jakarta day (UTC+7) runs from 17:00 UTC the day before to 17:00 UTC; the end is
    exclusive, so consecutive days meet without overlapping."""
    begin, finish = DateRange(THURSDAY, THURSDAY).utc_bounds(ZoneInfo("Asia/Jakarta"))
    assert begin == datetime(2026, 12, 2, 17, tzinfo=UTC)
    assert finish == datetime(2026, 12, 3, 17, tzinfo=UTC)
    jayapura = DateRange(THURSDAY, THURSDAY).utc_bounds(ZoneInfo("Asia/Jayapura"))
    assert jayapura[0] == datetime(2026, 12, 2, 15, tzinfo=UTC)
