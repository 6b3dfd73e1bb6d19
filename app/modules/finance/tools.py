"""The advisor's finance tools: the same service calls as `/finance`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from app.core.tools import ToolContext, ToolSpec
from app.core.types import SearchText, SingleLine
from app.modules.business.service import callers_business
from app.modules.finance.models import EntryType
from app.modules.finance.reports import FinanceReports
from app.modules.finance.repository import TransactionFilters
from app.modules.finance.schemas import (
    BoundedDate,
    BoundedDateTime,
    Note,
    Period,
    Rupiah,
    TransactionCreate,
)
from app.modules.finance.service import FinanceService

LIST_MAX = 50


class RecordParams(BaseModel):
    type: EntryType
    amount: Rupiah
    category: Annotated[str, SingleLine(60)] = Field(
        description="Category name (or id) of that type; see list_categories"
    )
    note: Note = ""
    occurred_at: BoundedDateTime | None = Field(
        default=None, description="When it happened, ISO 8601 (default: now, business time)"
    )


async def record_transaction(ctx: ToolContext, p: RecordParams) -> dict[str, Any]:
    async with ctx.session() as session:
        business = await callers_business(session, ctx.user_id)
        service = FinanceService.for_settings(session, ctx.settings)
        category = await service.category_by_name(business, p.type, p.category)
        recorded = await service.create(
            business,
            TransactionCreate(
                type=p.type,
                amount=p.amount,
                category_id=category.id,
                note=p.note,
                occurred_at=p.occurred_at,
            ),
        )
    entry = recorded.entry
    return {
        "recorded": {
            "id": str(entry.id),
            "type": entry.type,
            "amount": entry.amount,
            "category": recorded.category_name,
            "note": entry.note,
            "occurred_at": entry.occurred_at.isoformat(),
        },
        "points_awarded": recorded.points,
    }


class ListParams(BaseModel):
    limit: int = Field(default=10, ge=1, le=LIST_MAX)
    type: EntryType | None = None
    start: BoundedDate | None = Field(default=None, description="First day, YYYY-MM-DD")
    end: BoundedDate | None = Field(default=None, description="Last day, YYYY-MM-DD")
    text: SearchText | None = Field(default=None, description="Text in the note or category")


async def list_transactions(ctx: ToolContext, p: ListParams) -> dict[str, Any]:
    async with ctx.session() as session:
        business = await callers_business(session, ctx.user_id)
        service = FinanceService.for_settings(session, ctx.settings)
        begin, finish = service.local_range(business, p.start, p.end)
        rows, total = await service.list(
            business,
            TransactionFilters(type=p.type, start=begin, end=finish, text=p.text),
            p.limit,
            0,
        )
    return {
        "total": total,
        "transactions": [
            {
                "id": str(t.id),
                "type": t.type,
                "amount": t.amount,
                "category": name,
                "note": t.note,
                "occurred_at": t.occurred_at.isoformat(),
            }
            for t, name in rows
        ],
    }


class ReportParams(BaseModel):
    period: Period = "month"
    date: BoundedDate | None = Field(
        default=None, description="A day inside the period, YYYY-MM-DD (default: today)"
    )
    start: BoundedDate | None = Field(default=None, description="For period=custom")
    end: BoundedDate | None = Field(default=None, description="For period=custom, inclusive")


async def financial_report(ctx: ToolContext, p: ReportParams) -> dict[str, Any]:
    async with ctx.session() as session:
        business = await callers_business(session, ctx.user_id)
        summary = await FinanceReports(session).summary(business, p.period, p.date, p.start, p.end)
    # Without the per-day buckets (too long for the model's context) and the ids.
    return summary.model_dump(
        mode="json", exclude={"series": True, "by_category": {"__all__": {"category_id"}}}
    )


class CategoryParams(BaseModel):
    type: EntryType | None = None


async def list_categories(ctx: ToolContext, p: CategoryParams) -> dict[str, Any]:
    async with ctx.session() as session:
        business = await callers_business(session, ctx.user_id)
        service = FinanceService.for_settings(session, ctx.settings)
        categories = await service.categories(business, p.type)
    return {"categories": [{"id": str(c.id), "type": c.type, "name": c.name} for c in categories]}


TOOLS = [
    ToolSpec(
        "record_transaction",
        "Record the owner's income or expense in whole rupiah (e.g. 150000), with a "
        "category name. Earns points.",
        RecordParams,
        record_transaction,
    ),
    ToolSpec(
        "list_transactions",
        "List the owner's recent transactions, newest first, optionally filtered.",
        ListParams,
        list_transactions,
        read_only=True,
    ),
    ToolSpec(
        "financial_report",
        "Income, expense, net and totals by category for a day, week, month, year or "
        "custom range (business time zone).",
        ReportParams,
        financial_report,
        read_only=True,
    ),
    ToolSpec(
        "list_categories",
        "List the income and expense categories the owner can use.",
        CategoryParams,
        list_categories,
        read_only=True,
    ),
]
