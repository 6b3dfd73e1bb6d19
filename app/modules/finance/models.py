"""Finance categories and transactions (amounts in whole rupiah)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, String, Uuid
from sqlmodel import Field, SQLModel

from app.db.types import UTCDateTime, utcnow


class EntryType(StrEnum):
    INCOME = "income"
    EXPENSE = "expense"


class PaymentMethod(StrEnum):
    CASH = "CASH"
    BANK_TRANSFER = "BANK_TRANSFER"
    E_WALLET = "E_WALLET"
    DEBIT_CARD = "DEBIT_CARD"
    CREDIT_CARD = "CREDIT_CARD"


PAYMENT_METHODS_CHECK = "payment_method IN ({})".format(
    ", ".join(f"'{m.value}'" for m in PaymentMethod)
)


class FinanceCategory(SQLModel, table=True):
    """`business_id` NULL: a system default everyone sees; otherwise a business's own."""

    __tablename__ = "finance_categories"
    __table_args__ = (
        CheckConstraint("type IN ('income', 'expense')", name="ck_finance_category_type"),
        Index("ux_finance_category_name", "business_id", "type", "name_key", unique=True),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    business_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(
            Uuid(), ForeignKey("business_profiles.id", ondelete="CASCADE"), nullable=True
        ),
    )
    type: str = Field(sa_column=Column(String(16), nullable=False))
    name: str = Field(sa_column=Column(String(60), nullable=False))
    # The case-folded name (up to three times longer: "ß" -> "ss", "İ" -> "i̇").
    name_key: str = Field(sa_column=Column(String(200), nullable=False))
    icon: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class Transaction(SQLModel, table=True):
    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint("type IN ('income', 'expense')", name="ck_transaction_type"),
        CheckConstraint("amount > 0", name="ck_transaction_amount"),
        CheckConstraint(PAYMENT_METHODS_CHECK, name="ck_transaction_payment_method"),
        # List, summary and export all read one business's rows by time.
        Index("ix_transactions_business_occurred", "business_id", "occurred_at"),
        Index("ix_transactions_category", "category_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    business_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid(), ForeignKey("business_profiles.id", ondelete="CASCADE"), nullable=False
        )
    )
    type: str = Field(sa_column=Column(String(16), nullable=False))
    amount: int = Field(sa_column=Column(BigInteger(), nullable=False))
    category_id: uuid.UUID = Field(
        sa_column=Column(
            Uuid(), ForeignKey("finance_categories.id", ondelete="RESTRICT"), nullable=False
        )
    )
    note: str = Field(default="", sa_column=Column(String(500), nullable=False))
    payment_method: str = Field(
        default=PaymentMethod.CASH,
        sa_column=Column(String(16), nullable=False, server_default=PaymentMethod.CASH.value),
    )
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
