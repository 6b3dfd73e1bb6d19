"""Queries on refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.helpers import rows_touched
from app.modules.auth.models import RefreshToken


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, token: RefreshToken) -> None:
        self.session.add(token)

    async def get(self, jti: uuid.UUID) -> RefreshToken | None:
        return await self.session.get(RefreshToken, jti)

    async def claim(self, jti: uuid.UUID, now: datetime) -> bool:
        """Mark an unused, unrevoked token used. False if someone else got there first:
        only one of two concurrent refreshes with the same token can win."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                col(RefreshToken.jti) == jti,
                col(RefreshToken.used_at).is_(None),
                col(RefreshToken.revoked_at).is_(None),
            )
            .values(used_at=now)
        )
        return rows_touched(result) == 1

    async def reissue(self, jti: uuid.UUID, rotated_since: datetime, limit: int) -> bool:
        """Count one more renewal of a token that was rotated at `rotated_since` or later,
        unless it is revoked or has renewed `limit` times already. False if not allowed."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                col(RefreshToken.jti) == jti,
                col(RefreshToken.revoked_at).is_(None),
                col(RefreshToken.used_at) >= rotated_since,
                col(RefreshToken.reissues) < limit,
            )
            .values(reissues=col(RefreshToken.reissues) + 1)
        )
        return rows_touched(result) == 1

    async def revoke_family(self, family_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=now)
        )

    async def revoke_user(self, user_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(col(RefreshToken.user_id) == user_id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=now)
        )

    async def delete_expired(self, before: datetime) -> int:
        result = await self.session.execute(
            delete(RefreshToken).where(col(RefreshToken.expires_at) < before)
        )
        return rows_touched(result)
