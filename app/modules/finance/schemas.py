"""Request and response shapes for finance. Money is whole rupiah (integers)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.types import MultiLine, SingleLine
from app.modules.finance.models import EntryType, PaymentMethod

MAX_AMOUNT = 1_000_000_000_000  # Rp 1 trillion: far above any UMKM transaction

FIRST_YEAR, LAST_YEAR = 2000, 2100


def _year_in_range(value: date) -> date:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"must be between {FIRST_YEAR}-01-01 and {LAST_YEAR}-12-31")
    return value


# Dates and times are bounded before any arithmetic (time zones, period ends) is done
# on them: year 1 or 9999 would overflow it.
BoundedDate = Annotated[date, AfterValidator(_year_in_range)]
BoundedDateTime = Annotated[datetime, AfterValidator(_year_in_range)]

Rupiah = Annotated[
    int,
    Field(gt=0, le=MAX_AMOUNT, strict=True, description="Whole rupiah, 1 to 1,000,000,000,000"),
]
CategoryName = Annotated[str, SingleLine(60)]
Note = Annotated[str, MultiLine(500)]


class CategoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: EntryType
    name: CategoryName
    icon: Annotated[str, SingleLine(200)] | None = None


class CategoryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CategoryName | None = None
    icon: Annotated[str, SingleLine(200)] | None = None


class CategoryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: EntryType
    name: str
    icon: str | None
    is_default: bool


class TransactionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: EntryType
    amount: Rupiah
    category_id: uuid.UUID
    note: Note = ""
    payment_method: PaymentMethod = PaymentMethod.CASH
    occurred_at: BoundedDateTime | None = Field(
        default=None,
        description="When it happened (default: now). Without an offset: business time.",
    )


class TransactionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: EntryType | None = None
    amount: Rupiah | None = None
    category_id: uuid.UUID | None = None
    note: Note | None = None
    payment_method: PaymentMethod | None = None
    occurred_at: BoundedDateTime | None = None


class TransactionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: EntryType
    amount: int
    category_id: uuid.UUID
    category_name: str
    note: str
    payment_method: PaymentMethod
    occurred_at: datetime
    created_at: datetime


class TransactionCreated(TransactionPublic):
    points_awarded: int


class TransactionPage(BaseModel):
    items: list[TransactionPublic]
    total: int
    limit: int
    offset: int


Period = Literal["day", "week", "month", "year", "custom"]


class CategoryTotal(BaseModel):
    category_id: uuid.UUID
    category_name: str
    type: EntryType
    total: int
    count: int


class SeriesPoint(BaseModel):
    bucket: date
    income: int
    expense: int
    net: int


class FinanceSummary(BaseModel):
    period: Period
    start: date
    end: date  # inclusive
    timezone: str
    granularity: Literal["day", "month"]
    income: int
    expense: int
    net: int
    count: int
    by_category: list[CategoryTotal]
    series: list[SeriesPoint]
