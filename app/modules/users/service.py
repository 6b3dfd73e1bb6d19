"""Account rules: registration, profile changes, and what admins may do to accounts."""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ConflictError, NotFoundError
from app.core.security import PasswordHasher
from app.db.helpers import commit_or_conflict, flush_or_conflict
from app.db.types import utcnow
from app.modules.users.models import User, UserRole
from app.modules.users.repository import UserRepository
from app.modules.users.schemas import UserAdminUpdate, UserRegister

log = structlog.stdlib.get_logger(__name__)

EMAIL_TAKEN = "An account with this email already exists"
# An email change refused because the address is someone else's. Registration already
# says "already exists" (throttled per address); this wording asserts nothing, and the
# lookups behind it share registration's budget per address (AuthService.update_me).
EMAIL_UNAVAILABLE = "This email address cannot be used"


class UserService:
    def __init__(self, session: AsyncSession, hasher: PasswordHasher) -> None:
        self.session = session
        self.hasher = hasher
        self.users = UserRepository(session)

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.users.get(user_id)

    async def may_act(self, user_id: uuid.UUID, token_issued_at: datetime | None) -> bool:
        """The account is still active, and its sessions were not ended since the token
        issued at `token_issued_at` (None: the caller was authenticated just now)."""
        user = await self.users.get(user_id)
        return user is not None and sessions_hold(user, token_issued_at)

    async def get_by_email(self, email: str) -> User | None:
        return await self.users.get_by_email(email)

    async def register(self, data: UserRegister, *, role: UserRole = UserRole.USER) -> User:
        if await self.users.get_by_email(data.email):
            raise ConflictError(EMAIL_TAKEN)
        await self.session.commit()  # hand the connection back while bcrypt runs
        hashed = await self.hasher.hash(data.password)
        user = User(email=data.email, name=data.name, hashed_password=hashed, role=role)
        self.users.add(user)
        await commit_or_conflict(self.session, EMAIL_TAKEN)
        log.info("user_registered", user_id=str(user.id), role=str(role))
        return user

    async def update_name(self, user: User, name: str | None) -> User:
        """A profile change that leaves the login alone (no password needed)."""
        if name is not None:
            user.name = name
            user.updated_at = utcnow()
        await self.session.commit()
        return user

    async def set_email(self, user: User, email: str, name: str | None) -> None:
        """Move the login to `email` and end every token issued until now (flushed, not
        committed: the caller's transaction decides). 409 if the address is taken, also
        by a parallel claim."""
        if await self.users.get_by_email(email):
            raise ConflictError(EMAIL_UNAVAILABLE)
        user.email = email
        if name is not None:
            user.name = name
        user.updated_at = user.tokens_valid_after = utcnow()
        await flush_or_conflict(self.session, EMAIL_UNAVAILABLE)

    async def set_password_hash(self, user: User, hashed: str, *, end_sessions: bool) -> None:
        """Store a new hash (no commit: the caller's transaction decides).

        With `end_sessions`, every token issued to the user until now stops working.
        """
        user.hashed_password = hashed
        user.updated_at = utcnow()
        if end_sessions:
            user.tokens_valid_after = utcnow()

    # --- administration -----------------------------------------------------------------

    async def search(self, query: str | None, limit: int, offset: int) -> tuple[list[User], int]:
        return await self.users.search(query, limit, offset)

    async def get_or_404(self, user_id: uuid.UUID) -> User:
        user = await self.users.get(user_id)
        if user is None:
            raise NotFoundError("User not found")
        return user

    async def admin_update(self, actor: User, user_id: uuid.UUID, data: UserAdminUpdate) -> User:
        target = await self.get_or_404(user_id)
        values: dict[str, object] = {}
        if data.role is not None and data.role != target.role:
            values["role"] = data.role
        if data.is_active is not None and data.is_active != target.is_active:
            values["is_active"] = data.is_active
            if not data.is_active:
                values["tokens_valid_after"] = utcnow()  # ends every session at once
        if not values:
            return target
        if target.id == actor.id:
            raise ConflictError("You cannot change your own role or deactivate yourself")
        values["updated_at"] = utcnow()
        removes_admin = (
            target.is_admin
            and target.is_active
            and (values.get("role") == UserRole.USER or values.get("is_active") is False)
        )
        if removes_admin:
            if not await self.users.update_keeping_an_admin(target.id, values):
                await self.session.rollback()
                raise ConflictError("Cannot remove the last active admin")
            await self.session.commit()
            await self.session.refresh(target)
        else:
            for key, value in values.items():
                setattr(target, key, value)
            await self.session.commit()
        log.info(
            "user_updated_by_admin",
            user_id=str(target.id),
            admin_id=str(actor.id),
            role=str(target.role),
            is_active=target.is_active,
        )
        return target


def sessions_hold(user: User, issued_at: datetime | None) -> bool:
    """Whether a credential issued at `issued_at` still speaks for `user`: the account is
    active and its sessions were not ended after it (a password change or a deactivation
    sets `tokens_valid_after`). `iat` carries microseconds, so a token issued a moment
    before that is refused and the pair issued right after it accepted. None: the caller
    was authenticated just now."""
    cutoff = user.tokens_valid_after
    return user.is_active and (issued_at is None or cutoff is None or issued_at >= cutoff)
