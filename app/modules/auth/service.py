"""Authentication rules: login with throttling, token families, logout, password and
email changes.

Refresh tokens rotate: each use marks the presented token used and issues a new one in
the same family. A used token presented again means it was copied, so the whole family
is revoked (the thief and the owner both have to log in again). Access tokens issued
before a password or email change or a deactivation are refused by `authenticate`.

Failed logins are counted so that a guesser cannot lock the owner out (OWASP's
Authentication Cheat Sheet): per account and client address (only that address is
refused), per address across accounts, per account across addresses with a much higher
limit, and, once an account draws many failures, with a growing capped delay before each
further attempt's password is checked.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.errors import (
    DomainError,
    PermissionDeniedError,
    UnauthorizedError,
    UnprocessableError,
)
from app.core.security import IssuedToken, PasswordHasher, TokenCodec
from app.db.helpers import commit_or_conflict
from app.db.types import utcnow
from app.modules.auth.models import RefreshToken
from app.modules.auth.repository import RefreshTokenRepository
from app.modules.limits.service import REMEMBERED, LimitService, Window
from app.modules.users.schemas import UserRegister, UserUpdateMe
from app.modules.users.service import EMAIL_UNAVAILABLE, User, UserService, sessions_hold

log = structlog.stdlib.get_logger(__name__)

BAD_CREDENTIALS = "Incorrect email or password"
BAD_REFRESH = "Invalid or expired refresh token"
EXPIRED_TOKEN_GRACE = timedelta(days=1)  # keep used rows a little longer to spot reuse
# How many more times a rotated refresh token renews within a reuse grace window: a few
# tabs of one browser renewing at the same instant.
MAX_REISSUES = 3
# The first delay of an attempt on an account under attack; each further failure on the
# account doubles it, up to LOGIN_DELAY_MAX_SECONDS.
LOGIN_DELAY_BASE_SECONDS = 0.5
WRONG_CURRENT_PASSWORD = "Current password is incorrect"  # noqa: S105


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: IssuedToken
    refresh: IssuedToken
    user_id: uuid.UUID


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        hasher: PasswordHasher,
        codec: TokenCodec,
    ) -> None:
        self.session = session
        self.settings = settings
        self.hasher = hasher
        self.codec = codec
        self.users = UserService(session, hasher)
        self.tokens = RefreshTokenRepository(session)
        self.limits = LimitService(session)

    # --- access tokens -----------------------------------------------------------------

    async def authenticate(self, access_token: str) -> User:
        """The active user an access token belongs to, or UnauthorizedError."""
        try:
            claims = self.codec.decode(access_token, "access")
        except Exception:
            raise UnauthorizedError() from None
        user = await self.users.get(claims.user_id)
        if user is None or not sessions_hold(user, claims.issued_at):
            raise UnauthorizedError()
        return user

    # --- login -------------------------------------------------------------------------

    async def login(self, email: str, password: str, client: str) -> TokenPair:
        """Check a password and start a new token family.

        The attempt is counted *before* the password is checked (and uncounted if it
        succeeds), so a burst of parallel guesses cannot all slip past the limits. The
        database connection is handed back while the attempt waits its delay and while
        bcrypt runs, so a login flood cannot starve other requests of connections.
        """
        settings = self.settings
        here = address_key(email, client)
        limits = [
            (here, settings.LOGIN_MAX_FAILURES),
            (client_key(client), settings.LOGIN_MAX_FAILURES_PER_CLIENT),
        ]
        # An address the owner logged in from lately is theirs: guessing spread over
        # other addresses neither stops nor slows them there (OWASP's device cookies, by
        # address). Elsewhere the account-wide limit and the growing delay apply.
        known = await self._known_address(email, client)
        if not known:
            limits.append((account_key(email), settings.LOGIN_MAX_FAILURES_PER_ACCOUNT))
        attempt = await self._reserve_attempt(*limits)
        # Failures on the account before this attempt, from every address.
        delay = 0.0 if known else self.delay_after(await self._account_failures(email) - 1)
        user = await self.users.get_by_email(email)
        await self.session.commit()  # release the connection while waiting and during bcrypt
        if delay:
            log.info("login_delayed", seconds=delay)
            await anyio.sleep(delay)
        if user is None:
            await self.hasher.verify_dummy(password)  # same time as a wrong password
            raise UnauthorizedError(BAD_CREDENTIALS)
        ok, new_hash = await self.hasher.verify(password, user.hashed_password)
        if not ok:
            raise UnauthorizedError(BAD_CREDENTIALS)
        if not user.is_active:
            raise PermissionDeniedError("This account is deactivated")
        if new_hash:
            await self.users.set_password_hash(user, new_hash, end_sessions=False)
        # The owner's success wipes only this address's failures: the account-wide count
        # must keep slowing and stopping a guesser spread over many addresses.
        await self.limits.forget(attempt)
        await self.limits.clear(here)
        if settings.LOGIN_KNOWN_ADDRESS_DAYS:
            await self.limits.clear(known_address_key(email, client))  # one row, the newest
            self.limits.record(known_address_key(email, client))
        pair = self._issue_pair(user, family_id=uuid.uuid4())
        await self.session.commit()
        log.info("login", user_id=str(user.id), rehashed=bool(new_hash))
        return pair

    async def login_delay(self, email: str) -> float:
        """Seconds the next login attempt on this account waits before its password is
        checked, given the failures recorded on it (from every address) in the window."""
        delay = self.delay_after(await self._account_failures(email))
        await self.session.commit()
        return delay

    def delay_after(self, failures: int) -> float:
        """Nothing for the first LOGIN_DELAY_AFTER_FAILURES failures, then 0.5 s doubling
        with each further failure, at most LOGIN_DELAY_MAX_SECONDS.

        A cap rather than a lockout: a guesser spread over many addresses waits on every
        attempt (and meets LOGIN_MAX_FAILURES_PER_ACCOUNT), while the owner, at worst,
        waits a few seconds longer to log in.
        """
        cap = self.settings.LOGIN_DELAY_MAX_SECONDS
        over = failures - self.settings.LOGIN_DELAY_AFTER_FAILURES
        if cap <= 0 or over < 0:
            return 0.0
        return min(cap, LOGIN_DELAY_BASE_SECONDS * 2 ** min(over, 32))

    async def _known_address(self, email: str, client: str) -> bool:
        """Whether the account logged in from `client` within LOGIN_KNOWN_ADDRESS_DAYS."""
        days = self.settings.LOGIN_KNOWN_ADDRESS_DAYS
        return bool(days) and await self.limits.seen_since(
            known_address_key(email, client), days * 86400
        )

    async def _account_failures(self, email: str) -> int:
        return await self.limits.count(
            account_key(email),
            self.settings.LOGIN_THROTTLE_WINDOW_SECONDS,
            self.settings.LOGIN_MAX_FAILURES_PER_ACCOUNT + 1,
        )

    async def register(self, data: UserRegister, client: str) -> User:
        """Create an account; one client address may create only so many per window."""
        await self._reserve_attempt(
            (registration_key(client), self.settings.REGISTER_MAX_PER_CLIENT),
            refusal="Too many accounts created from this address; try again later",
        )
        return await self.users.register(data)

    async def _reserve_attempt(
        self,
        *limits: tuple[str, int],
        refusal: str = "Too many failed login attempts; try again later",
    ) -> list[uuid.UUID]:
        """Count an attempt under each key within the login throttle window (429 over a
        limit); returns the rows to forget if the attempt succeeds."""
        window = self.settings.LOGIN_THROTTLE_WINDOW_SECONDS
        return await self.limits.reserve(
            *(Window(key, limit, window) for key, limit in limits), refusal=refusal
        )

    # --- refresh tokens ----------------------------------------------------------------

    def _issue_pair(self, user: User, family_id: uuid.UUID) -> TokenPair:
        access = self.codec.issue(user.id, "access")
        refresh = self.codec.issue(user.id, "refresh")
        self.tokens.add(
            RefreshToken(
                jti=refresh.jti,
                family_id=family_id,
                user_id=user.id,
                expires_at=refresh.expires_at,
            )
        )
        return TokenPair(access, refresh, user.id)

    async def refresh(
        self, refresh_token: str | None, *, reuse_grace: timedelta = timedelta(0)
    ) -> TokenPair:
        """Rotate a refresh token into a new pair of the same family.

        A token that was already rotated revokes its family, unless it was rotated at most
        `reuse_grace` ago: then it is the same browser renewing from several tabs with one
        cookie at once (the web client's API), and it renews in the family, at most
        `MAX_REISSUES` more times, so a copy cannot mint pairs at will.
        """
        if not refresh_token:
            raise UnauthorizedError("Refresh token missing")
        try:
            claims = self.codec.decode(refresh_token, "refresh")
        except Exception:
            raise UnauthorizedError(BAD_REFRESH) from None
        row = await self.tokens.get(claims.jti)
        if row is None or row.user_id != claims.user_id or row.revoked_at is not None:
            raise UnauthorizedError(BAD_REFRESH)
        now = utcnow()
        user = await self.users.get(row.user_id)
        if user is None or not sessions_hold(user, row.created_at):
            await self.tokens.revoke_family(row.family_id, now)
            await self.session.commit()
            raise UnauthorizedError(BAD_REFRESH)
        # Both conditional UPDATEs refuse a revoked token, and lock its row: a logout or
        # a revocation committed meanwhile wins.
        if not await self.tokens.claim(row.jti, now) and not (
            reuse_grace and await self.tokens.reissue(row.jti, now - reuse_grace, MAX_REISSUES)
        ):
            await self._revoke_family_for_reuse(row, now)
        pair = self._issue_pair(user, family_id=row.family_id)
        await self.session.commit()
        return pair

    async def _revoke_family_for_reuse(self, row: RefreshToken, now: datetime) -> None:
        family_id, user_id = row.family_id, row.user_id  # read before rollback expires `row`
        await self.session.rollback()
        await self.tokens.revoke_family(family_id, now)
        await self.session.commit()
        log.warning("refresh_token_reuse", user_id=str(user_id), family_id=str(family_id))
        raise UnauthorizedError(BAD_REFRESH)

    async def logout(self, refresh_token: str | None) -> None:
        """Revoke the family of the presented refresh token; quietly nothing otherwise."""
        if not refresh_token:
            return
        try:
            claims = self.codec.decode(refresh_token, "refresh")
        except Exception:
            return
        row = await self.tokens.get(claims.jti)
        if row is not None and row.user_id == claims.user_id:
            await self.tokens.revoke_family(row.family_id, utcnow())
            await self.session.commit()
            log.info("logout", user_id=str(row.user_id))

    # --- password and email -------------------------------------------------------------

    async def change_password(self, user: User, current: str, new: str) -> TokenPair:
        """Verify, store the new hash, end every session, and start a fresh one."""
        await self._check_current_password(user, current)
        hashed = await self.hasher.hash(new)
        await self.users.set_password_hash(user, hashed, end_sessions=True)
        pair = await self._restart_sessions(user)
        await self.session.commit()
        log.info("password_changed", user_id=str(user.id))
        return pair

    async def update_me(
        self, user: User, data: UserUpdateMe, client: str
    ) -> tuple[User, TokenPair | None]:
        """Change the name and/or the login email; an email change returns a fresh pair.

        Changing the email needs the current password (checked first, so a stolen token
        cannot even probe which addresses are taken) and ends every session, like a
        password change. Attempts are limited per account, and the lookup of the new
        address counts against the client address's registration budget: an email
        change tells no more about who is registered than registering would.
        """
        if data.email is None or data.email == user.email:
            return await self.users.update_name(user, data.name), None
        if data.current_password is None:
            raise UnprocessableError("current_password is required to change the email")
        await self._check_current_password(user, data.current_password)
        await self.limits.reserve(
            Window(
                f"email-change:{user.id}",
                self.settings.EMAIL_CHANGES_PER_WINDOW,
                self.settings.EMAIL_CHANGE_WINDOW_SECONDS,
            ),
            Window(
                registration_key(client),
                self.settings.REGISTER_MAX_PER_CLIENT,
                self.settings.LOGIN_THROTTLE_WINDOW_SECONDS,
            ),
            refusal="Too many email changes; try again later",
        )
        await self.users.set_email(user, data.email, data.name)
        pair = await self._restart_sessions(user)
        await commit_or_conflict(self.session, EMAIL_UNAVAILABLE)  # a parallel claim won
        log.info("email_changed", user_id=str(user.id))
        return user, pair

    async def _check_current_password(self, user: User, current: str) -> None:
        """400 unless `current` is the user's password.

        Wrong guesses are throttled under a key of their own, one budget for every check
        of the current password: someone holding a stolen access token gets only so many
        guesses, and cannot lock the owner out of logging in.
        """
        attempt = await self._reserve_attempt(
            (f"current-password:{user.id}", self.settings.LOGIN_MAX_FAILURES),
            refusal="Too many wrong current passwords; try again later",
        )
        await self.session.commit()  # release the connection during bcrypt
        ok, _ = await self.hasher.verify(current, user.hashed_password)
        if not ok:
            raise DomainError(WRONG_CURRENT_PASSWORD, status_code=400)
        await self.limits.forget(attempt)
        await self.session.commit()  # no connection held while the caller hashes

    async def _restart_sessions(self, user: User) -> TokenPair:
        """Revoke every refresh-token family of the user and issue a pair in a new one
        (no commit). The caller has set `tokens_valid_after`, which ends access tokens."""
        await self.tokens.revoke_user(user.id, utcnow())
        return self._issue_pair(user, family_id=uuid.uuid4())

    # --- housekeeping ------------------------------------------------------------------

    async def purge_expired(self) -> int:
        """Delete refresh tokens past expiry (and the grace that spots reuse), and the
        addresses logins came from longer than LOGIN_KNOWN_ADDRESS_DAYS ago."""
        now = utcnow()
        tokens = await self.tokens.delete_expired(now - EXPIRED_TOKEN_GRACE)
        known_for = timedelta(days=self.settings.LOGIN_KNOWN_ADDRESS_DAYS)
        await self.limits.forget_remembered(KNOWN_ADDRESS, now - known_for)
        await self.session.commit()
        return tokens


def _digest(email: str) -> str:
    # A digest, so any address fits in a key and none is stored.
    return hashlib.sha256(email.encode()).hexdigest()


def account_key(email: str) -> str:
    """Throttle key of failed logins on an account, from every address."""
    return f"account:{_digest(email)}"


def address_key(email: str, client: str) -> str:
    """Throttle key of failed logins on an account from one client address."""
    return f"login:{_digest(email)}:{client}"


KNOWN_ADDRESS = "known-login:"


def known_address_key(email: str, client: str) -> str:
    """Key of the last successful login to an account from one client address."""
    return f"{REMEMBERED}{KNOWN_ADDRESS}{_digest(email)}:{client}"


def client_key(client: str) -> str:
    """Throttle key of failed logins from one client address, on any account."""
    return f"client:{client}"


def registration_key(client: str) -> str:
    """Throttle key of lookups whether an email is taken (registrations and email
    changes) from one client address."""
    return f"register:{client}"
