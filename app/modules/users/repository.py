"""Queries on `users`."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app.db.helpers import escape_like, rows_touched
from app.modules.users.models import User, UserRole


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def get_by_email(self, email: str) -> User | None:
        result = await self.session.execute(select(User).where(col(User.email) == email))
        return result.scalar_one_or_none()

    def add(self, user: User) -> None:
        self.session.add(user)

    async def search(self, query: str | None, limit: int, offset: int) -> tuple[list[User], int]:
        stmt = select(User)
        if query:
            pattern = f"%{escape_like(query.lower())}%"
            stmt = stmt.where(
                or_(
                    func.lower(col(User.email)).like(pattern, escape="\\"),
                    func.lower(col(User.name)).like(pattern, escape="\\"),
                )
            )
        total = (
            await self.session.execute(select(func.count()).select_from(stmt.subquery()))
        ).scalar_one()
        rows = await self.session.execute(
            stmt.order_by(col(User.created_at).desc(), col(User.id)).limit(limit).offset(offset)
        )
        return list(rows.scalars()), total

    async def update_keeping_an_admin(self, user_id: uuid.UUID, values: dict[str, Any]) -> bool:
        """Apply `values` to an admin's row only if another active admin remains.

        Two admins demoting each other at the same moment must not leave none. On
        PostgreSQL the active admins' rows are locked first, so the second request waits
        and then sees the first one's change; on SQLite the guarded UPDATE is a single
        atomic statement. Returns False (nothing written) when it would remove the last.
        """
        active_admin = (col(User.role) == UserRole.ADMIN) & col(User.is_active).is_(True)
        await self.session.execute(select(col(User.id)).where(active_admin).with_for_update())
        other = aliased(User)
        other_remains = (
            select(col(other.id))
            .where(
                col(other.role) == UserRole.ADMIN,
                col(other.is_active).is_(True),
                col(other.id) != user_id,
            )
            .exists()
        )
        result = await self.session.execute(
            update(User)
            .where(col(User.id) == user_id, other_remains)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return rows_touched(result) == 1

    async def any_admin(self) -> bool:
        stmt = select(col(User.id)).where(col(User.role) == UserRole.ADMIN).limit(1)
        return (await self.session.execute(stmt)).first() is not None
