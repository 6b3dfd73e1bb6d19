"""Finance rules: categories, transactions, and the points for diligence (the reports
are in `reports`).

Recording a transaction earns `TRANSACTION_POINTS`, at most
`POINTS_TRANSACTION_DAILY_CAP` times a day (the business's local day), so a burst of tiny
entries cannot farm points; deleting a transaction takes its points back. Both happen
in the same database transaction as the entry itself.
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from app.core.config import Settings
from app.core.errors import ConflictError, NotFoundError, PermissionDeniedError, UnprocessableError
from app.db.helpers import commit_or_conflict
from app.db.types import utcnow
from app.modules.finance.models import FinanceCategory, Transaction
from app.modules.finance.periods import DateRange
from app.modules.finance.repository import FinanceRepository, TransactionFilters
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

if TYPE_CHECKING:  # the entity the business service hands out
    from app.modules.business.service import BusinessProfile

TRANSACTION_POINTS = 5
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)
CATEGORY_NOT_FOUND = "Category not found"
CATEGORY_IN_USE = "The category is in use; move its transactions to another category first"
NO_SUCH_CATEGORY = "category_id: no such category (use GET /finance/categories)"


@dataclass(frozen=True)
class RecordedTransaction:
    entry: Transaction
    category_name: str
    points: int
    unlocked: list[str]  # codes of the achievements it unlocked


class FinanceService:
    def __init__(self, session: AsyncSession, *, daily_cap: int) -> None:
        self.session = session
        self.repo = FinanceRepository(session)
        self.daily_cap = daily_cap

    @classmethod
    def for_settings(cls, session: AsyncSession, settings: Settings) -> FinanceService:
        """The one way the app builds it, so the cap in the settings holds on every path
        (routes, the web client's adapter, the advisor's and MCP clients' tools)."""
        return cls(session, daily_cap=settings.POINTS_TRANSACTION_DAILY_CAP)

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
        raise UnprocessableError(
            f"No {type_} category '{name_or_id}'. The {type_} categories are: {names}"
        )

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
            raise UnprocessableError(NO_SUCH_CATEGORY)
        if category.type != type_:
            raise UnprocessableError(
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
            raise UnprocessableError("occurred_at must be between 2000-01-01 and tomorrow")
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
            raise UnprocessableError(NO_SUCH_CATEGORY) from None
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
            raise UnprocessableError("end must not be before start")
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
            raise UnprocessableError(NO_SUCH_CATEGORY) from None
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
