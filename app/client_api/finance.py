"""Finance calls of the web client (#18-#24); a business is required (404 without)."""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict

from app.api.deps import CurrentBusiness, FinanceServiceDep, SessionDep
from app.client_api.errors import ClientError
from app.client_api.fields import Icon, Ignored, Lower, Upper
from app.client_api.views import UnlockedAchievement, first_unlocked
from app.core.errors import Responses
from app.modules.finance.models import EntryType, FinanceCategory, PaymentMethod, Transaction
from app.modules.finance.reports import FinanceReports
from app.modules.finance.repository import TransactionFilters
from app.modules.finance.schemas import (
    BoundedDateTime,
    CategoryCreate,
    CategoryName,
    Note,
    Rupiah,
    TransactionCreate,
)

router = APIRouter(
    prefix="/finance",
    responses={404: {"model": ClientError, "description": "Not found (or no business yet)"}},
)

# The client draws a category's icon as text; the default categories of an old database
# may have none.
DEFAULT_ICONS = {EntryType.INCOME: "💰", EntryType.EXPENSE: "🛒"}
MAX_PAGE = 10_000  # with at most 100 a page: the native API's offset bound


class ClientCategory(BaseModel):
    id: uuid.UUID
    name: str
    type: EntryType
    icon: str
    is_default: bool


class ClientCategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CategoryName
    type: Lower[EntryType]
    icon: Icon = None


class ClientTransaction(BaseModel):
    id: uuid.UUID
    type: EntryType
    amount: int
    category_id: uuid.UUID
    category_name: str
    category: str
    description: str
    payment_method: PaymentMethod
    transaction_date: datetime
    created_at: datetime


class ClientTransactionCreated(ClientTransaction):
    unlocked_achievement: UnlockedAchievement | None = None


class ClientTransactionIn(BaseModel):
    """The "Tambah" form. `amount` is whole rupiah: a fraction is refused, not rounded."""

    model_config = ConfigDict(extra="forbid")

    amount: Rupiah
    type: Lower[EntryType]
    category_id: uuid.UUID
    category_name: Ignored = None  # the category's own name is used
    payment_method: Upper[PaymentMethod] = PaymentMethod.CASH
    description: Note = ""
    transaction_date: BoundedDateTime | None = None


class ClientTransactionPage(BaseModel):
    items: list[ClientTransaction]
    total: int
    page: int
    size: int
    pages: int


class ClientBreakdown(BaseModel):
    category: str
    amount: int
    percentage: float


class ClientSummary(BaseModel):
    period: str
    period_start: date
    period_end: date
    total_income: int
    total_expense: int
    net_profit: int
    income_breakdown: list[ClientBreakdown]
    expense_breakdown: list[ClientBreakdown]


_CATEGORY_ERRORS: Responses = {
    403: {"model": ClientError, "description": "Default categories cannot be deleted"},
    409: {"model": ClientError, "description": "Name taken, or the category is in use"},
}


def _category(c: FinanceCategory) -> ClientCategory:
    kind = EntryType(c.type)
    return ClientCategory(
        id=c.id,
        name=c.name,
        type=kind,
        icon=c.icon or DEFAULT_ICONS[kind],
        is_default=c.business_id is None,
    )


def _transaction(t: Transaction, category_name: str) -> ClientTransaction:
    return ClientTransaction(
        id=t.id,
        type=EntryType(t.type),
        amount=t.amount,
        category_id=t.category_id,
        category_name=category_name,
        category=category_name,
        description=t.note,
        payment_method=PaymentMethod(t.payment_method),
        transaction_date=t.occurred_at,
        created_at=t.created_at,
    )


@router.get("/categories", response_model=list[ClientCategory])
async def client_categories(
    business: CurrentBusiness, finance: FinanceServiceDep
) -> list[ClientCategory]:
    return [_category(c) for c in await finance.categories(business, None)]


@router.post(
    "/categories",
    status_code=status.HTTP_201_CREATED,
    response_model=ClientCategory,
    responses={409: _CATEGORY_ERRORS[409]},
)
async def client_create_category(
    data: ClientCategoryIn, business: CurrentBusiness, finance: FinanceServiceDep
) -> ClientCategory:
    create = CategoryCreate(type=data.type, name=data.name, icon=data.icon)
    return _category(await finance.create_category(business, create))


@router.delete(
    "/categories/{category_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_CATEGORY_ERRORS,
)
async def client_delete_category(
    category_id: uuid.UUID, business: CurrentBusiness, finance: FinanceServiceDep
) -> Response:
    await finance.delete_category(business, category_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/transactions", response_model=ClientTransactionPage)
async def client_transactions(
    business: CurrentBusiness,
    finance: FinanceServiceDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 20,
    start_date: Annotated[BoundedDateTime | None, Query()] = None,
    end_date: Annotated[BoundedDateTime | None, Query()] = None,
) -> ClientTransactionPage:
    """Newest first. The date filter covers whole business-local days, the last one
    included: the client sends each chosen day's local midnight."""
    begin, finish = finance.local_range(
        business, finance.local_date(business, start_date), finance.local_date(business, end_date)
    )
    rows, total = await finance.list(
        business, TransactionFilters(start=begin, end=finish), size, (page - 1) * size
    )
    return ClientTransactionPage(
        items=[_transaction(t, name) for t, name in rows],
        total=total,
        page=page,
        size=size,
        pages=max(1, math.ceil(total / size)),
    )


@router.post(
    "/transactions",
    status_code=status.HTTP_201_CREATED,
    response_model=ClientTransactionCreated,
)
async def client_create_transaction(
    data: ClientTransactionIn,
    business: CurrentBusiness,
    session: SessionDep,
    finance: FinanceServiceDep,
) -> ClientTransactionCreated:
    """Record income or expense; earns points, and may unlock an achievement."""
    recorded = await finance.create(
        business,
        TransactionCreate(
            type=data.type,
            amount=data.amount,
            category_id=data.category_id,
            note=data.description,
            payment_method=data.payment_method,
            occurred_at=data.transaction_date,
        ),
    )
    view = _transaction(recorded.entry, recorded.category_name)
    return ClientTransactionCreated(
        **view.model_dump(), unlocked_achievement=await first_unlocked(session, recorded.unlocked)
    )


@router.delete("/transactions/{transaction_id}", status_code=status.HTTP_204_NO_CONTENT)
async def client_delete_transaction(
    transaction_id: uuid.UUID, business: CurrentBusiness, finance: FinanceServiceDep
) -> Response:
    await finance.delete(business, transaction_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/summary", response_model=ClientSummary)
async def client_summary(
    business: CurrentBusiness,
    session: SessionDep,
    period: Literal["day", "week", "month", "year"] = "month",
) -> ClientSummary:
    """Totals of the calendar period (local to the business) and each type's split by
    category, with shares in percent."""
    summary = await FinanceReports(session).summary(business, period, None, None, None)
    totals = {EntryType.INCOME: summary.income, EntryType.EXPENSE: summary.expense}

    def breakdown(kind: EntryType) -> list[ClientBreakdown]:
        return [
            ClientBreakdown(
                category=c.category_name,
                amount=c.total,
                percentage=round(c.total * 100 / totals[kind], 2),
            )
            for c in summary.by_category
            if c.type == kind and totals[kind]
        ]

    return ClientSummary(
        period=period,
        period_start=summary.start,
        period_end=summary.end,
        total_income=summary.income,
        total_expense=summary.expense,
        net_profit=summary.net,
        income_breakdown=breakdown(EntryType.INCOME),
        expense_breakdown=breakdown(EntryType.EXPENSE),
    )
