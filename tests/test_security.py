"""Password hashing and tokens: cost, upgrades on login, cookie flags in production."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from app.core.security import InvalidTokenError, PasswordHasher, TokenCodec
from app.main import create_app
from app.modules.users.models import User
from tests.conftest import asgi_client, make_settings
from tests.helpers.accounts import login, register, unique_email
from tests.helpers.databases import fresh_database_url


async def test_default_cost_is_12_rounds_and_runs_off_the_event_loop() -> None:
    hasher = PasswordHasher()
    seen: list[int] = []
    original = hasher.context.hash

    def spy(secret: str) -> str:
        seen.append(threading.get_ident())
        return original(secret)

    hasher.context.hash = spy  # type: ignore[method-assign]
    hashed = await hasher.hash("Rahasia-Warung-123")
    assert hashed.startswith("$2b$12$")
    assert seen and seen[0] != threading.get_ident()
    assert await hasher.verify("Rahasia-Warung-123", hashed) == (True, None)
    assert (await hasher.verify("wrong", hashed))[0] is False
    assert (await hasher.verify("x" * 100, hashed))[0] is False  # over 72 bytes: no match, no error


async def test_weaker_hashes_are_upgraded_at_login(tmp_path: Path) -> None:
    email = unique_email()
    async with fresh_database_url(tmp_path, "rehash") as url:
        weak = create_app(make_settings(url, tmp_path / "d", BCRYPT_ROUNDS=4))
        async with LifespanManager(weak), asgi_client(weak) as c:
            assert (await register(c, email)).status_code == 201
        strong = create_app(make_settings(url, tmp_path / "d", BCRYPT_ROUNDS=5))
        async with LifespanManager(strong), asgi_client(strong) as c:
            assert (await login(c, email, "Rahasia-Warung-123")).status_code == 200
            async with strong.state.context.db.sessionmaker() as session:
                user = (await session.execute(select(User).where(User.email == email))).scalar_one()
            assert user.hashed_password.startswith("$2b$05$")
            assert (await login(c, email, "Rahasia-Warung-123")).status_code == 200


def test_token_codec_round_trip_and_type_check() -> None:
    codec = TokenCodec("k" * 40, timedelta(minutes=5), timedelta(days=1))
    user_id = uuid.uuid4()
    access = codec.issue(user_id, "access")
    claims = codec.decode(access.token, "access")
    assert claims.user_id == user_id and claims.jti == access.jti and access.expires_in == 300
    with pytest.raises(InvalidTokenError):
        codec.decode(access.token, "refresh")
    other = TokenCodec("z" * 40, timedelta(minutes=5), timedelta(days=1))
    with pytest.raises(InvalidTokenError):
        other.decode(access.token, "access")


@pytest.mark.postgres_only
async def test_production_refresh_cookie_is_secure(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(database_url, tmp_path, ENV="production", SECRET_KEY="p" * 48)
    app = create_app(settings)
    async with LifespanManager(app), asgi_client(app) as c:
        email = unique_email()
        assert (await register(c, email)).status_code == 201
        r = await login(c, email, "Rahasia-Warung-123")
        cookie = r.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
