"""Password hashing (bcrypt via passlib's CryptContext, from `libpass`) and JWTs (PyJWT).

bcrypt is deliberately slow (~0.2 s of CPU at 12 rounds): every hash and verify runs in a
worker thread so the event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.to_thread
import jwt
from passlib.context import CryptContext

if TYPE_CHECKING:
    from app.core.config import Settings

TokenType = Literal["access", "refresh"]
ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("sub", "type", "exp", "iat", "jti")
MAX_PASSWORD_BYTES = 72  # bcrypt ignores (bcrypt 5: rejects) anything longer


class PasswordHasher:
    """bcrypt through passlib; `deprecated="auto"` plus `min_rounds` marks hashes made with
    fewer rounds (or an older scheme) for an upgrade at the next successful login."""

    def __init__(self, rounds: int = 12) -> None:
        self.context = CryptContext(
            schemes=["bcrypt"],
            deprecated="auto",
            bcrypt__default_rounds=rounds,
            bcrypt__min_rounds=rounds,
        )
        self._dummy_hash: str | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    def _threads(self) -> anyio.CapacityLimiter:
        # A pool of its own, one thread short of the core count: a burst of logins queues
        # here instead of taking every worker thread and every core from the other
        # requests (bench/auth.py: /auth/me p99 under a login flood 1.13x vs 1.45x with
        # one thread per core).
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(max(1, (os.cpu_count() or 2) - 1))
        return self._limiter

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.context.hash, password, limiter=self._threads())

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """(matches, new hash if the stored one should be upgraded).

        A password bcrypt cannot take (over 72 bytes, NUL bytes) simply does not match;
        it still costs a full verify, so its timing tells nothing.
        """
        return await anyio.to_thread.run_sync(
            self._verify_sync, password, hashed, limiter=self._threads()
        )

    def _verify_sync(self, password: str, hashed: str) -> tuple[bool, str | None]:
        try:
            return self.context.verify_and_update(password, hashed)
        except ValueError:  # includes passlib's PasswordValueError
            self.context.verify("x", hashed)
            return False, None

    async def verify_dummy(self, password: str) -> None:
        """Spend the same time as a real verify, for an account that does not exist."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("not-a-real-password-just-for-timing")
        await self.verify(password, self._dummy_hash)


class InvalidTokenError(Exception):
    """The token is malformed, forged, expired, of the wrong type or missing a claim."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    type: TokenType
    jti: uuid.UUID
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: uuid.UUID
    expires_at: datetime
    expires_in: int  # seconds


class TokenCodec:
    """HS256 access and refresh tokens with claims sub, type, exp, iat, jti."""

    def __init__(self, secret_key: str, access_ttl: timedelta, refresh_ttl: timedelta) -> None:
        self._key = secret_key
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCodec:
        return cls(
            settings.secret_key(),
            access_ttl=timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES),
            refresh_ttl=timedelta(days=settings.REFRESH_TOKEN_EXPIRE_DAYS),
        )

    def issue(
        self, user_id: uuid.UUID, token_type: TokenType, *, now: datetime | None = None
    ) -> IssuedToken:
        now = now or datetime.now(UTC)
        ttl = self.access_ttl if token_type == "access" else self.refresh_ttl  # noqa: S105
        jti = uuid.uuid4()
        expires_at = (now + ttl).replace(microsecond=0)
        claims = {
            "sub": str(user_id),
            "type": token_type,
            # NumericDate may have a fraction: microseconds let a password change refuse
            # every token issued before it, even within the same second.
            "iat": round(now.timestamp(), 6),
            "exp": int(expires_at.timestamp()),
            "jti": str(jti),
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return IssuedToken(token, jti, expires_at, int(ttl.total_seconds()))

    def decode(self, token: str, expected_type: TokenType) -> TokenClaims:
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": list(REQUIRED_CLAIMS)},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(type(exc).__name__) from None
        if payload.get("type") != expected_type:
            raise InvalidTokenError("wrong token type")
        try:
            user_id = uuid.UUID(str(payload["sub"]))
            jti = uuid.UUID(str(payload["jti"]))
            issued_at = datetime.fromtimestamp(float(payload["iat"]), UTC)
            expires_at = datetime.fromtimestamp(float(payload["exp"]), UTC)
        except (ValueError, TypeError, OverflowError, OSError):
            raise InvalidTokenError("malformed claims") from None
        return TokenClaims(user_id, expected_type, jti, issued_at, expires_at)
