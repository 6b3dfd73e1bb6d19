"""`/finance`: categories, transactions, summary and CSV export of my business."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from app.api.deps import (
    ContextDep,
    CurrentBusiness,
    CurrentUser,
    FinanceServiceDep,
    SessionDep,
)
from app.core.errors import UNPROCESSABLE_RESPONSE
from app.core.types import Limit, Offset, SearchText
from app.modules.finance.models import EntryType, FinanceCategory, Transaction
from app.modules.finance.reports import FinanceReports, csv_chunks
from app.modules.finance.repository import TransactionFilters
from app.modules.finance.schemas import (
    BoundedDate,
    CategoryCreate,
    CategoryPublic,
    CategoryUpdate,
    FinanceSummary,
    Period,
    TransactionCreate,
    TransactionCreated,
    TransactionPage,
    TransactionPublic,
    TransactionUpdate,
)
from app.modules.limits.service import LimitService, SlotLease

router = APIRouter(
    prefix="/finance",
    tags=["finance"],
    responses={
        401: {"description": "Not authenticated"},
        404: {"description": "Not found (or no business profile yet)"},
        **UNPROCESSABLE_RESPONSE,
    },
)

DateQuery = Annotated[
    BoundedDate | None, Query(description="YYYY-MM-DD, in the business's time zone")
]


def _category(c: FinanceCategory) -> CategoryPublic:
    return CategoryPublic(
        id=c.id, type=EntryType(c.type), name=c.name, icon=c.icon, is_default=c.business_id is None
    )


def _transaction(t: Transaction, category_name: str) -> TransactionPublic:
    return TransactionPublic.model_validate({**t.model_dump(), "category_name": category_name})


@router.get("/categories", response_model=list[CategoryPublic])
async def list_categories(
    business: CurrentBusiness, finance: FinanceServiceDep, type: EntryType | None = None
) -> list[CategoryPublic]:
    """The default categories and my own."""
    return [_category(c) for c in await finance.categories(business, type)]


@router.post(
    "/categories",
    status_code=status.HTTP_201_CREATED,
    response_model=CategoryPublic,
    responses={409: {"description": "Name already used for this type"}},
)
async def create_category(
    data: CategoryCreate, business: CurrentBusiness, finance: FinanceServiceDep
) -> CategoryPublic:
    return _category(await finance.create_category(business, data))


@router.patch(
    "/categories/{category_id}",
    response_model=CategoryPublic,
    responses={
        403: {"description": "Default categories are read-only"},
        409: {"description": "Name already used for this type"},
    },
)
async def update_category(
    category_id: uuid.UUID,
    data: CategoryUpdate,
    business: CurrentBusiness,
    finance: FinanceServiceDep,
) -> CategoryPublic:
    return _category(await finance.update_category(business, category_id, data))


@router.delete(
    "/categories/{category_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        403: {"description": "Default categories are read-only"},
        409: {"description": "In use"},
    },
)
async def delete_category(
    category_id: uuid.UUID, business: CurrentBusiness, finance: FinanceServiceDep
) -> Response:
    await finance.delete_category(business, category_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/transactions", status_code=status.HTTP_201_CREATED, response_model=TransactionCreated
)
async def create_transaction(
    data: TransactionCreate, business: CurrentBusiness, finance: FinanceServiceDep
) -> TransactionCreated:
    """Record income or expense (whole rupiah). Earns points, up to a daily cap."""
    recorded = await finance.create(business, data)
    return TransactionCreated.model_validate(
        {
            **recorded.entry.model_dump(),
            "category_name": recorded.category_name,
            "points_awarded": recorded.points,
        }
    )


@router.get("/transactions", response_model=TransactionPage)
async def list_transactions(
    business: CurrentBusiness,
    finance: FinanceServiceDep,
    type: EntryType | None = None,
    category_id: uuid.UUID | None = None,
    start: DateQuery = None,
    end: DateQuery = None,
    q: Annotated[SearchText | None, Query(description="Text in the note or category name")] = None,
    limit: Annotated[Limit, Query()] = 20,
    offset: Annotated[Offset, Query()] = 0,
) -> TransactionPage:
    """My transactions, newest first."""
    begin, finish = finance.local_range(business, start, end)
    filters = TransactionFilters(
        type=type, category_id=category_id, start=begin, end=finish, text=q
    )
    rows, total = await finance.list(business, filters, limit, offset)
    return TransactionPage(
        items=[_transaction(t, n) for t, n in rows], total=total, limit=limit, offset=offset
    )


class _LeasedStream(StreamingResponse):
    """A streamed response that holds a usage place while it is sent: renewed in the
    background, freed just before the last (empty) chunk, so a client that has read the
    whole file may start the next export at once, or when the client goes away."""

    def __init__(
        self, content: AsyncGenerator[bytes, None], lease: SlotLease, **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self.chunks = content
        self.lease = lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def release_before_the_end(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await self.lease.release()
            await send(message)

        try:
            async with self.lease.held():
                await super().__call__(scope, receive, release_before_the_end)
        finally:
            await self.chunks.aclose()  # here, not whenever the garbage collector runs


@router.get(
    "/transactions/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "CSV of the range"},
        429: {"description": "Too many exports of this user running at once"},
    },
)
async def export_transactions(
    context: ContextDep,
    user: CurrentUser,
    business: CurrentBusiness,
    session: SessionDep,
    start: Annotated[BoundedDate, Query(description="First day, YYYY-MM-DD")],
    end: Annotated[
        BoundedDate, Query(description="Last day (inclusive), at most 366 days after start")
    ],
) -> StreamingResponse:
    """CSV (UTF-8 with a byte-order mark) of the range, streamed in batches, at most
    100,000 rows. `X-Export-Truncated: true`: the range holds more, ask for a shorter one.
    At most EXPORT_MAX_PARALLEL_PER_USER exports of one user run at once."""
    reports = FinanceReports(session)
    export = reports.csv_export(business, start, end)
    settings, sessionmaker = context.settings, context.db.sessionmaker
    holder = await LimitService(session).take_slot(
        f"export:{user.id}",
        settings.EXPORT_MAX_PARALLEL_PER_USER,
        refusal=(
            f"At most {settings.EXPORT_MAX_PARALLEL_PER_USER} exports may run at once; "
            "wait for one to finish"
        ),
    )
    lease = SlotLease(sessionmaker, holder)
    try:
        export = await reports.count_export(export)
    except BaseException:
        await lease.release()
        raise
    finally:
        # The stream reads in short sessions of its own: give this request's connection
        # back now, not when the last byte has been sent.
        await session.close()
    filename = f"telaten-transactions-{start.isoformat()}-{end.isoformat()}.csv"
    return _LeasedStream(
        csv_chunks(sessionmaker, export),
        lease,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            # More rows than one export holds: ask for a shorter range.
            "X-Export-Truncated": "true" if export.truncated else "false",
        },
    )


@router.get("/transactions/{transaction_id}", response_model=TransactionPublic)
async def get_transaction(
    transaction_id: uuid.UUID, business: CurrentBusiness, finance: FinanceServiceDep
) -> TransactionPublic:
    return _transaction(*await finance.get(business, transaction_id))


@router.patch("/transactions/{transaction_id}", response_model=TransactionPublic)
async def update_transaction(
    transaction_id: uuid.UUID,
    data: TransactionUpdate,
    business: CurrentBusiness,
    finance: FinanceServiceDep,
) -> TransactionPublic:
    return _transaction(*await finance.update(business, transaction_id, data))


@router.delete("/transactions/{transaction_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_transaction(
    transaction_id: uuid.UUID, business: CurrentBusiness, finance: FinanceServiceDep
) -> Response:
    """Delete a transaction; the points it earned are taken back."""
    await finance.delete(business, transaction_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/summary", response_model=FinanceSummary)
async def summary(
    business: CurrentBusiness,
    session: SessionDep,
    period: Period = "month",
    date_: Annotated[
        BoundedDate | None,
        Query(alias="date", description="A day inside the period (default: today)"),
    ] = None,
    start: DateQuery = None,
    end: DateQuery = None,
) -> FinanceSummary:
    """Income, expense, net and count for a period, by category, with a chart series
    (daily buckets up to 92 days, monthly beyond)."""
    return await FinanceReports(session).summary(business, period, date_, start, end)
