"""Queries on business profiles."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.modules.business.models import BusinessProfile


class BusinessRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_user(self, user_id: uuid.UUID) -> BusinessProfile | None:
        result = await self.session.execute(
            select(BusinessProfile).where(col(BusinessProfile.user_id) == user_id)
        )
        return result.scalar_one_or_none()

    async def get(self, business_id: uuid.UUID) -> BusinessProfile | None:
        return await self.session.get(BusinessProfile, business_id)
