"""Accounts and tokens over the API: happy paths, token abuse, throttling, hostile input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
import structlog.testing
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import delete, select, update

from app.api.deps import get_auth_service
from app.core.security import ALGORITHM
from app.modules.auth.models import RefreshToken
from app.modules.limits.models import RateEvent, UsageSlot
from app.modules.users.models import User
from tests.conftest import asgi_client
from tests.helpers.accounts import (
    API,
    DEFAULT_PASSWORD,
    Account,
    bearer,
    login,
    new_account,
    register,
    unique_email,
)

# --- happy paths ------------------------------------------------------------------------


async def test_register_login_me_refresh_logout(client: httpx.AsyncClient) -> None:
    email = unique_email()
    r = await register(client, email.upper(), name="  Bu Sari  ")
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["email"] == email and user["name"] == "Bu Sari"
    assert user["role"] == "user" and user["is_active"] is True
    assert "password" not in r.text and "hashed" not in r.text

    r = await login(client, email.title(), DEFAULT_PASSWORD)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 3600
    cookie = r.headers["set-cookie"]
    assert f"refresh_token={tokens['refresh_token']}" in cookie
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/api/v1/auth" in cookie
    assert "Secure" not in cookie  # development over http; production sets it
    assert r.headers["cache-control"] == "no-store"

    me = await client.get(f"{API}/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["id"] == user["id"]

    # Refresh from the cookie (browser) ...
    r = await client.post(f"{API}/auth/refresh")
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != tokens["refresh_token"]
    # ... and from the body (API client).
    client.cookies.clear()
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 200
    third = r.json()
    assert (
        await client.get(f"{API}/auth/me", headers=bearer(third["access_token"]))
    ).status_code == 200

    r = await client.post(f"{API}/auth/logout", json={"refresh_token": third["refresh_token"]})
    assert r.status_code == 204
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert r.status_code == 401


async def test_oauth2_form_token_endpoint_for_swagger(client: httpx.AsyncClient) -> None:
    account = await new_account(client)
    r = await client.post(
        f"{API}/auth/token", data={"username": account.email.upper(), "password": account.password}
    )
    assert r.status_code == 200, r.text
    assert (
        await client.get(f"{API}/auth/me", headers=bearer(r.json()["access_token"]))
    ).status_code == 200
    spec = (await client.get(f"{API}/openapi.json")).json()
    scheme = spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"


async def test_update_me_and_email_uniqueness(client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    b = await new_account(client)
    r = await client.patch(f"{API}/auth/me", headers=a.headers, json={"name": "Pak Budi"})
    assert r.status_code == 200 and r.json()["name"] == "Pak Budi"
    r = await client.patch(
        f"{API}/auth/me",
        headers=a.headers,
        json={"email": b.email.upper(), "current_password": a.password},
    )
    assert r.status_code == 409
    new_email = unique_email()
    r = await client.patch(
        f"{API}/auth/me",
        headers=a.headers,
        json={"email": new_email, "current_password": a.password},
    )
    assert r.status_code == 200 and r.json()["email"] == new_email


async def test_user_cannot_change_own_role(client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    for body in ({"role": "admin"}, {"name": "x", "role": "admin"}, {"is_active": True}):
        r = await client.patch(f"{API}/auth/me", headers=a.headers, json=body)
        assert r.status_code == 422
    me = await client.get(f"{API}/auth/me", headers=a.headers)
    assert me.json()["role"] == "user"
    r = await client.patch(f"{API}/admin/users/{a.id}", headers=a.headers, json={"role": "admin"})
    assert r.status_code == 403


# --- token abuse ------------------------------------------------------------------------


def _forge(app: FastAPI, claims: dict[str, object], key: str | None = None) -> str:
    return jwt.encode(claims, key or app.state.context.settings.secret_key(), algorithm=ALGORITHM)


def _claims(user_id: str, **overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": user_id,
        "type": "access",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def test_refresh_token_is_not_an_access_token_and_vice_versa(
    client: httpx.AsyncClient,
) -> None:
    a = await new_account(client)
    assert (await client.get(f"{API}/auth/me", headers=bearer(a.refresh_token))).status_code == 401
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": a.access_token})
    assert r.status_code == 401


async def test_forged_and_malformed_access_tokens_are_401(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    a = await new_account(client)
    unsigned = jwt.encode(_claims(a.id), key=None, algorithm="none")  # type: ignore[arg-type]
    bad_tokens = {
        "alg none": unsigned,
        "wrong signature": _forge(app, _claims(a.id), key="another-key-another-key-another-key!"),
        "non-UUID sub": _forge(app, _claims("1 OR 1=1")),
        "missing type": _forge(app, _claims(a.id, type=None)),
        "missing jti": _forge(app, _claims(a.id, jti=None)),
        "missing iat": _forge(app, _claims(a.id, iat=None)),
        "expired": _forge(app, _claims(a.id, exp=datetime.now(UTC) - timedelta(minutes=1))),
        "unknown user": _forge(app, _claims(str(uuid.uuid4()))),
        "huge exp": _forge(app, _claims(a.id, exp=2**70)),
        "garbage": "not.a.jwt",
        "empty-ish": "a",
    }
    for label, token in bad_tokens.items():
        r = await client.get(f"{API}/auth/me", headers=bearer(token))
        assert r.status_code == 401, (label, r.status_code, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    # The same forged claims, correctly signed, prove the harness itself is right.
    assert (
        await client.get(f"{API}/auth/me", headers=bearer(_forge(app, _claims(a.id))))
    ).status_code == 200
    for header in ("Bearer", "Basic abc", "Bearer " + "x" * 5000):
        r = await client.get(f"{API}/auth/me", headers={"Authorization": header})
        assert r.status_code == 401


async def test_deleted_user_token_is_401(app: FastAPI, client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    async with app.state.context.db.sessionmaker() as session:
        await session.execute(delete(User).where(User.id == uuid.UUID(a.id)))
        await session.commit()
    assert (await client.get(f"{API}/auth/me", headers=a.headers)).status_code == 401
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": a.refresh_token})
    assert r.status_code == 401


async def test_refresh_reuse_revokes_the_whole_family(client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": a.refresh_token})
    assert r.status_code == 200
    rotated = r.json()["refresh_token"]
    # The old token again: someone copied it.
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": a.refresh_token})
    assert r.status_code == 401
    # The legitimate newest token dies with its family.
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": rotated})
    assert r.status_code == 401
    # Other logins (other families) are untouched.
    r = await login(client, a.email, a.password)
    assert r.status_code == 200


async def test_parallel_refresh_with_one_token_yields_at_most_one_pair(
    client: httpx.AsyncClient,
) -> None:
    a = await new_account(client)
    results = await asyncio.gather(
        *(
            client.post(f"{API}/auth/refresh", json={"refresh_token": a.refresh_token})
            for _ in range(5)
        )
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) <= 1 and set(codes) <= {200, 401}, codes


async def test_logout_without_token_is_harmless(client: httpx.AsyncClient) -> None:
    assert (await client.post(f"{API}/auth/logout")).status_code == 204
    r = await client.post(f"{API}/auth/logout", json={"refresh_token": "garbage"})
    assert r.status_code == 204
    assert (await client.post(f"{API}/auth/refresh")).status_code == 401


async def test_logout_via_cookie_clears_it(client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    await login(client, a.email, a.password)  # sets the cookie on this client
    r = await client.post(f"{API}/auth/logout")
    assert r.status_code == 204
    assert 'refresh_token=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    assert (await client.post(f"{API}/auth/refresh")).status_code == 401


# --- password change and deactivation ---------------------------------------------------


async def test_password_change_ends_every_session(client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    other = (await login(client, a.email, a.password)).json()  # a second device
    client.cookies.clear()
    r = await client.post(
        f"{API}/auth/me/password",
        headers=a.headers,
        json={"current_password": a.password, "new_password": "Baru-Sekali-456"},
    )
    assert r.status_code == 200, r.text
    fresh = r.json()
    for token in (a.access_token, other["access_token"]):
        assert (await client.get(f"{API}/auth/me", headers=bearer(token))).status_code == 401
    for token in (a.refresh_token, other["refresh_token"]):
        r = await client.post(f"{API}/auth/refresh", json={"refresh_token": token})
        assert r.status_code == 401
    assert (
        await client.get(f"{API}/auth/me", headers=bearer(fresh["access_token"]))
    ).status_code == 200
    assert (await login(client, a.email, a.password)).status_code == 401
    assert (await login(client, a.email, "Baru-Sekali-456")).status_code == 200


async def test_password_change_needs_the_current_password(client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    r = await client.post(
        f"{API}/auth/me/password",
        headers=a.headers,
        json={"current_password": "wrong-password", "new_password": "Baru-Sekali-456"},
    )
    assert r.status_code == 400
    assert (await login(client, a.email, a.password)).status_code == 200


# --- registration input -----------------------------------------------------------------


async def test_duplicate_email_is_409_also_differing_in_case(client: httpx.AsyncClient) -> None:
    email = unique_email()
    assert (await register(client, email)).status_code == 201
    assert (await register(client, email)).status_code == 409
    r = await register(client, email.upper())
    assert r.status_code == 409 and r.json() == {
        "detail": "An account with this email already exists"
    }


async def test_password_of_73_utf8_bytes_is_a_clear_422(client: httpx.AsyncClient) -> None:
    password = "é" * 36 + "a"  # 37 characters, 73 bytes
    r = await register(client, password=password)
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "password"]
    assert "72 bytes" in detail["msg"] and "73" in detail["msg"]
    assert password not in r.text
    assert (await register(client, password="é" * 36)).status_code == 201  # exactly 72 bytes
    assert (await register(client, password="short")).status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Bu\x00Sari"},
        {"name": "x" * 10_000},
        {"name": ""},
        {"name": "   "},
        {"email": "a\x00b@example.com"},
        {"email": "a" * 10_000 + "@example.com"},
        {"email": "not-an-email"},
        {"password": "abc\x00defghij"},
        {"role": "admin"},
    ],
)
async def test_hostile_registration_input_is_422(
    client: httpx.AsyncClient, body: dict[str, str]
) -> None:
    data = {"email": unique_email(), "name": "Bu Sari", "password": DEFAULT_PASSWORD, **body}
    r = await client.post(f"{API}/auth/register", json=data)
    assert r.status_code == 422, r.text


async def test_eight_parallel_registrations_of_one_email(app: FastAPI) -> None:
    email = unique_email()
    clients = [asgi_client(app) for _ in range(8)]
    try:
        results = await asyncio.gather(*(register(c, email) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 7, [r.text for r in results]


# --- login hardening --------------------------------------------------------------------


async def test_unknown_email_and_wrong_password_answer_alike(client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    wrong = await login(client, a.email, "wrong-password-1")
    unknown = await login(client, unique_email(), "wrong-password-1")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Incorrect email or password"}
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")
    # Over-long and NUL passwords are just wrong passwords at login, not errors.
    assert (await login(client, a.email, "é" * 100)).status_code == 401
    assert (await login(client, a.email, "a\x00b")).status_code == 401


async def test_sixth_rapid_wrong_password_is_429(client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    for _ in range(5):
        assert (await login(client, a.email, "wrong-password-1")).status_code == 401
    r = await login(client, a.email, "wrong-password-1")
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 900
    # Even the right password waits: otherwise guessing could go on.
    assert (await login(client, a.email, a.password)).status_code == 429


async def test_token_form_is_throttled_like_login_and_says_so(client: httpx.AsyncClient) -> None:
    """Found by tests/test_fuzz.py: /token and /me/password answered statuses their
    schema did not declare (clients generated from it would not expect them)."""
    a = await new_account(client)
    form = {"username": a.email, "password": "wrong-password-1"}
    codes = [(await client.post(f"{API}/auth/token", data=form)).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
    paths = (await client.get(f"{API}/openapi.json")).json()["paths"]
    for route in ("login", "token"):
        assert {"200", "401", "403", "429"} <= set(
            paths[f"{API}/auth/{route}"]["post"]["responses"]
        )
    # The statuses of test_wrong_current_passwords_do_not_lock_the_owner_out_of_login.
    assert {"200", "400", "401", "429"} <= set(
        paths[f"{API}/auth/me/password"]["post"]["responses"]
    )


async def test_unknown_accounts_are_throttled_the_same_way(client: httpx.AsyncClient) -> None:
    email = unique_email()
    codes = [(await login(client, email, "wrong-password-1")).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]


async def test_one_client_address_is_throttled_across_accounts(app: FastAPI) -> None:
    limit = app.state.context.settings.LOGIN_MAX_FAILURES_PER_CLIENT
    async with asgi_client(app, client_ip="127.9.9.9") as c:
        for i in range(limit):
            assert (
                await login(c, f"nobody{i}-{uuid.uuid4().hex[:6]}@example.com", "x" * 8)
            ).status_code == 401
        r = await login(c, unique_email(), "x" * 8)
        assert r.status_code == 429 and "retry-after" in r.headers
    async with asgi_client(app) as other:  # another address is not affected
        assert (await login(other, unique_email(), "x" * 8)).status_code == 401


async def test_success_resets_the_account_counter(client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    for _ in range(4):
        await login(client, a.email, "wrong-password-1")
    assert (await login(client, a.email, a.password)).status_code == 200
    for _ in range(4):
        assert (await login(client, a.email, "wrong-password-1")).status_code == 401


async def test_throttling_is_shared_by_app_instances_on_one_database(
    app: FastAPI, settings
) -> None:  # type: ignore[no-untyped-def]
    """Two workers share counts through the database, not process memory."""
    from app.main import create_app

    second = create_app(settings)  # a second app object: its own engine and pool
    ip = "127.65.0.1"  # one client address reaching either worker
    async with asgi_client(app, client_ip=ip) as c1, asgi_client(second, client_ip=ip) as c2:
        a = await new_account(c1)
        for c in (c1, c2, c1, c2, c1):
            assert (await login(c, a.email, "wrong-password-1")).status_code == 401
        assert (await login(c2, a.email, a.password)).status_code == 429
    await second.state.context.db.dispose()


async def test_expired_rows_are_cleaned_up(app: FastAPI, client: httpx.AsyncClient) -> None:
    from app.modules.limits.service import LimitService

    a = await new_account(client)
    old = datetime.now(UTC) - timedelta(days=30)
    key = f"account:{a.email}"
    async with app.state.context.db.sessionmaker() as session:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == uuid.UUID(a.id))
            .values(expires_at=old)
        )
        session.add(RateEvent(key=key, created_at=old))
        session.add(RateEvent(key=key, created_at=datetime.now(UTC)))  # inside the horizon
        session.add(UsageSlot(key=key, slot=0, holder=uuid.uuid4(), expires_at=old))
        await session.commit()
        service = await get_auth_service(session, app.state.context)
        assert await service.purge_expired() >= 1
        events, slots = await LimitService(session).purge(old + timedelta(days=1))
        assert events >= 1 and slots >= 1
        left = await session.execute(
            select(RefreshToken).where(RefreshToken.user_id == uuid.UUID(a.id))
        )
        assert left.first() is None
        kept = await session.execute(select(RateEvent).where(RateEvent.key == key))
        assert len(kept.all()) == 1
        slot_rows = await session.execute(select(UsageSlot).where(UsageSlot.key == key))
        assert slot_rows.first() is None


# --- found in review: inputs that once gave 500s, races, revocation gaps ----------------


async def test_token_form_with_huge_fields_is_422_and_logs_no_password(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "MyRealSecretPassw0rd-" + "q" * 1100 + "-TAILSECRET"
    for data in (
        {"username": "a" * 300 + "@x.com", "password": secret},
        {"username": "someone@example.com", "password": secret},
    ):
        r = await client.post(f"{API}/auth/token", data=data)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"][0] == "body"
        assert "MyRealSecret" not in r.text
    assert "MyRealSecret" not in caplog.text and "TAILSECRET" not in caplog.text


@pytest.mark.parametrize(
    "email",
    ["a\x00@x.com", "\u0130" * 254, "a\ud800@x.com", "x\u202e@example.com", "a\nb@example.com"],
)
async def test_login_with_unstorable_email_is_4xx_not_500(
    client: httpx.AsyncClient, email: str
) -> None:
    body = json.dumps({"email": email, "password": "whatever-1"}).encode()
    r = await client.post(
        f"{API}/auth/login", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    if "\ud800" not in email:  # a form cannot even encode a lone surrogate
        r = await client.post(
            f"{API}/auth/token", data={"username": email, "password": "whatever-1"}
        )
        assert r.status_code in (401, 422), r.text


@pytest.mark.parametrize(
    "name", ["a\ud800", "\udfff", "Bu\u202eiraS", "Bu\u2066Sari", "Bu\x85Sari"]
)
async def test_names_with_surrogates_or_bidi_overrides_are_422(
    client: httpx.AsyncClient, name: str
) -> None:
    body = {"email": unique_email(), "name": name, "password": DEFAULT_PASSWORD}
    raw = json.dumps(body).encode()  # json.dumps escapes lone surrogates as \\udXXX
    r = await client.post(
        f"{API}/auth/register", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    a = await new_account(client)
    r = await client.patch(
        f"{API}/auth/me",
        content=json.dumps({"name": name}).encode(),
        headers={**a.headers, "content-type": "application/json"},
    )
    assert r.status_code == 422, r.text


async def test_a_burst_of_parallel_guesses_gets_at_most_the_limit_through(app: FastAPI) -> None:
    limit = app.state.context.settings.LOGIN_MAX_FAILURES
    async with asgi_client(app) as c:
        a = await new_account(c)
        results = await asyncio.gather(*(login(c, a.email, f"wrong-guess-{i}") for i in range(30)))
    codes = [r.status_code for r in results]
    assert codes.count(401) <= limit and codes.count(401) + codes.count(429) == 30, codes
    retry = [int(r.headers["retry-after"]) for r in results if r.status_code == 429]
    assert retry and all(
        0 < s <= app.state.context.settings.LOGIN_THROTTLE_WINDOW_SECONDS for s in retry
    )


async def test_password_change_in_the_same_second_still_ends_old_tokens(
    client: httpx.AsyncClient,
) -> None:
    a = await new_account(client)
    r = await client.post(
        f"{API}/auth/me/password",
        headers=a.headers,
        json={"current_password": a.password, "new_password": "Ganti-Cepat-789"},
    )
    assert r.status_code == 200
    assert (await client.get(f"{API}/auth/me", headers=a.headers)).status_code == 401
    assert (
        await client.get(f"{API}/auth/me", headers=bearer(r.json()["access_token"]))
    ).status_code == 200


async def test_wrong_current_passwords_do_not_lock_the_owner_out_of_login(
    client: httpx.AsyncClient,
) -> None:
    a = await new_account(client)
    codes = []
    for _ in range(7):
        r = await client.post(
            f"{API}/auth/me/password",
            headers=a.headers,
            json={"current_password": "not-the-password", "new_password": "Ganti-Cepat-789"},
        )
        codes.append(r.status_code)
    assert codes[:5] == [400] * 5 and codes[5:] == [429, 429]
    assert (await login(client, a.email, a.password)).status_code == 200


async def test_login_normalises_the_email_like_registration(client: httpx.AsyncClient) -> None:
    local = f"toko{uuid.uuid4().hex[:8]}"
    fullwidth = f"{local}@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com"  # EXAMPLE
    r = await register(client, fullwidth)
    assert r.status_code == 201 and r.json()["email"] == f"{local}@example.com"
    assert (await login(client, fullwidth, DEFAULT_PASSWORD)).status_code == 200
    assert (
        await login(client, f"{local.upper()}@Example.COM", DEFAULT_PASSWORD)
    ).status_code == 200


@pytest.mark.postgres_only
async def test_a_login_flood_does_not_starve_other_requests_of_connections(
    tmp_path: Path, database_url: str
) -> None:
    """bcrypt runs with no pooled connection held: 20 logins (5 accounts, 4 each, within
    the throttle) queue on the hashing threads while authenticated requests go on, even
    with a pool of 2 connections."""
    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(
        database_url,
        tmp_path,
        BCRYPT_ROUNDS=11,  # ~0.13 s a hash here: the flood lasts several pool timeouts
        DB_POOL_SIZE=2,
        DB_MAX_OVERFLOW=0,
        DB_POOL_TIMEOUT=2,
    )
    app = create_app(settings)
    async with LifespanManager(app), asgi_client(app) as c:
        accounts = [await new_account(c) for _ in range(5)]
        a = accounts[0]
        flood = [login(c, x.email, x.password) for x in accounts for _ in range(4)]
        probes = [c.get(f"{API}/auth/me", headers=a.headers) for _ in range(20)]
        results = await asyncio.gather(*flood, *probes)
    assert {r.status_code for r in results[20:]} == {200}
    assert {r.status_code for r in results[:20]} == {200}


async def test_one_address_can_only_register_so_many_accounts(app: FastAPI) -> None:
    limit = app.state.context.settings.REGISTER_MAX_PER_CLIENT
    async with asgi_client(app, client_ip="127.8.8.8") as c:
        codes = [(await register(c)).status_code for _ in range(limit + 1)]
        assert codes == [201] * limit + [429]
        r = await register(c)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "accounts" in r.json()["detail"]
    async with asgi_client(app) as other:
        assert (await register(other)).status_code == 201


# --- issue 14: changing the login email needs the password (items 5 and 9) --------------

CURRENT_PASSWORD_FIELD = "current_password"


async def _change_email(
    client: httpx.AsyncClient, account_headers: dict[str, str], email: str, password: str | None
) -> httpx.Response:
    body: dict[str, str] = {"email": email}
    if password is not None:
        body["current_password"] = password
    return await client.patch(f"{API}/auth/me", headers=account_headers, json=body)


async def test_an_email_change_needs_the_current_password(client: httpx.AsyncClient) -> None:
    """A stolen token pair alone must not be enough to take the account for good."""
    a = await new_account(client)
    target = unique_email()
    r = await _change_email(client, a.headers, target, None)
    assert r.status_code == 422, r.text
    assert CURRENT_PASSWORD_FIELD in json.dumps(r.json()["detail"])
    r = await _change_email(client, a.headers, target, "not-the-password")
    assert r.status_code == 400 and r.json() == {"detail": "Current password is incorrect"}
    assert (await client.get(f"{API}/auth/me", headers=a.headers)).json()["email"] == a.email
    # A name-only change needs no password, also when the unchanged email comes along.
    r = await client.patch(f"{API}/auth/me", headers=a.headers, json={"name": "Pak Budi"})
    assert r.status_code == 200 and r.json()["name"] == "Pak Budi"
    assert r.json()["tokens"] is None
    r = await client.patch(
        f"{API}/auth/me", headers=a.headers, json={"name": "Bu Sari", "email": a.email.upper()}
    )
    assert r.status_code == 200 and r.json()["tokens"] is None
    assert (await client.get(f"{API}/auth/me", headers=a.headers)).status_code == 200


async def test_an_email_change_ends_every_other_session(client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    other = (await login(client, a.email, a.password)).json()  # a second device
    client.cookies.clear()
    new_email = unique_email()
    with structlog.testing.capture_logs() as logs:
        r = await _change_email(client, a.headers, new_email.upper(), a.password)
    assert r.status_code == 200, r.text
    # Logged, by user id, without either address.
    [event] = [e for e in logs if e["event"] == "email_changed"]
    assert event["user_id"] == a.id
    assert a.email not in str(logs) and new_email not in str(logs)
    body = r.json()
    # Still the user's fields (existing clients read them), plus a fresh pair.
    assert body["id"] == a.id and body["email"] == new_email and body["name"] == "Bu Sari"
    fresh = body["tokens"]
    assert fresh["token_type"] == "bearer" and fresh["refresh_token"]
    cookie = r.headers["set-cookie"]
    assert f"refresh_token={fresh['refresh_token']}" in cookie and "HttpOnly" in cookie
    client.cookies.clear()
    for token in (a.access_token, other["access_token"]):
        assert (await client.get(f"{API}/auth/me", headers=bearer(token))).status_code == 401
    for token in (a.refresh_token, other["refresh_token"]):
        r = await client.post(f"{API}/auth/refresh", json={"refresh_token": token})
        assert r.status_code == 401
    me = await client.get(f"{API}/auth/me", headers=bearer(fresh["access_token"]))
    assert me.status_code == 200 and me.json()["email"] == new_email
    r = await client.post(f"{API}/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert r.status_code == 200
    assert (await login(client, a.email, a.password)).status_code == 401
    assert (await login(client, new_email, a.password)).status_code == 200


async def test_wrong_passwords_at_an_email_change_are_throttled_apart_from_login(
    client: httpx.AsyncClient,
) -> None:
    a = await new_account(client)
    codes = [
        (await _change_email(client, a.headers, unique_email(), "not-the-password")).status_code
        for _ in range(6)
    ]
    assert codes == [400] * 5 + [429]
    # One budget for every check of the current password: the password change's too.
    r = await client.post(
        f"{API}/auth/me/password",
        headers=a.headers,
        json={"current_password": "not-the-password-2", "new_password": "Ganti-Cepat-789"},
    )
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert (await login(client, a.email, a.password)).status_code == 200


async def test_a_stolen_token_cannot_probe_which_emails_are_registered(
    client: httpx.AsyncClient,
) -> None:
    """Without the password, a taken and a free address get the same answer."""
    a = await new_account(client)
    taken = await new_account(client)
    for password in (None, "not-the-password"):
        answers = [
            await _change_email(client, a.headers, email, password)
            for email in (taken.email, unique_email())
        ]
        assert answers[0].status_code == answers[1].status_code != 409
        assert answers[0].json() == answers[1].json()


async def test_email_changes_are_throttled_per_account(app: FastAPI) -> None:
    limit = app.state.context.settings.EMAIL_CHANGES_PER_WINDOW
    async with asgi_client(app) as c:
        a = await new_account(c)
        taken = await new_account(c)
        headers = a.headers
        codes = []
        for i in range(limit + 1):
            r = await _change_email(
                c, headers, taken.email if i % 2 else unique_email(), a.password
            )
            codes.append(r.status_code)
            if r.status_code == 200:
                headers = bearer(r.json()["tokens"]["access_token"])
            elif r.status_code == 409:
                assert r.json() == {"detail": "This email address cannot be used"}
            c.cookies.clear()
        assert codes[:limit] == [200 if i % 2 == 0 else 409 for i in range(limit)], codes
        assert codes[limit] == 429
        r = await _change_email(c, headers, unique_email(), a.password)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "email" in r.json()["detail"]
        # Name changes are not email changes.
        r = await c.patch(f"{API}/auth/me", headers=headers, json={"name": "Masih Bisa"})
        assert r.status_code == 200


async def test_email_lookups_share_the_address_budget_of_registration(app: FastAPI) -> None:
    """An email change reveals no more from one address than registering would."""
    limit = app.state.context.settings.REGISTER_MAX_PER_CLIENT
    async with asgi_client(app) as owner_client:
        a = await new_account(owner_client)
    async with asgi_client(app, client_ip="127.7.7.7") as c:
        for _ in range(limit):
            assert (await register(c)).status_code == 201
        r = await _change_email(c, a.headers, unique_email(), a.password)
        assert r.status_code == 429, r.text


@pytest.mark.slow
async def test_parallel_email_changes_to_one_address(app: FastAPI) -> None:
    """Two owners claiming one free address at once, 20 pairs: one of each pair gets it,
    the other a 409, never a 500."""
    pairs = 20
    accounts = []
    for _ in range(2 * pairs):  # each from its own address, like separate owners
        async with asgi_client(app) as c:
            accounts.append(await new_account(c))

    async def claim(account: Account, email: str) -> int:
        async with asgi_client(app) as c:
            r = await _change_email(c, account.headers, email, account.password)
            return r.status_code

    targets = [unique_email() for _ in range(pairs)]
    codes = await asyncio.gather(
        *(claim(accounts[2 * i + side], targets[i]) for i in range(pairs) for side in (0, 1))
    )
    for i in range(pairs):
        assert sorted(codes[2 * i : 2 * i + 2]) == [200, 409], codes


# --- issue 14: failed logins elsewhere do not lock the owner out (item 8) ---------------


@contextlib.asynccontextmanager
async def _app_with(app: FastAPI, **overrides: object) -> AsyncIterator[FastAPI]:
    """A second app on the suite's database with other limits."""
    from app.main import create_app

    other = create_app(app.state.context.settings.model_copy(update=overrides))
    try:
        yield other
    finally:
        await other.state.context.db.dispose()


async def _login_delay(app: FastAPI, email: str) -> float:
    async with app.state.context.db.sessionmaker() as session:
        service = await get_auth_service(session, app.state.context)
        return await service.login_delay(email)


async def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out(app: FastAPI) -> None:
    limit = app.state.context.settings.LOGIN_MAX_FAILURES
    async with (
        asgi_client(app) as owner_client,
        asgi_client(app, client_ip="127.66.0.1") as attacker,
        asgi_client(app, client_ip="127.66.0.2") as owner_elsewhere,
    ):
        a = await new_account(owner_client)
        codes = [(await login(attacker, a.email, "wrong-guess-1")).status_code for _ in range(6)]
        assert codes == [401] * limit + [429]
        assert (await login(attacker, a.email, a.password)).status_code == 429
        assert (await login(owner_elsewhere, a.email, a.password)).status_code == 200
        assert (await login(owner_client, a.email, a.password)).status_code == 200


async def test_a_success_clears_only_its_own_address_count(app: FastAPI) -> None:
    async with (
        asgi_client(app) as b,
        asgi_client(app, client_ip="127.66.1.1") as a_side,
    ):
        a = await new_account(b)
        for c in (a_side, b):
            for _ in range(4):
                assert (await login(c, a.email, "wrong-guess-1")).status_code == 401
        assert (await login(b, a.email, a.password)).status_code == 200
        # B starts again from nothing; A's four failures still count.
        assert (await login(a_side, a.email, "wrong-guess-1")).status_code == 401
        assert (await login(a_side, a.email, "wrong-guess-1")).status_code == 429
        for _ in range(4):
            assert (await login(b, a.email, "wrong-guess-1")).status_code == 401


async def test_many_addresses_together_meet_a_higher_limit_per_account(app: FastAPI) -> None:
    async with _app_with(
        app, LOGIN_MAX_FAILURES_PER_ACCOUNT=6, LOGIN_DELAY_MAX_SECONDS=0.0
    ) as other:
        async with asgi_client(other) as c:
            a = await new_account(c)
        for n in range(3):
            async with asgi_client(other, client_ip=f"127.66.2.{n + 1}") as c:
                for _ in range(2):
                    assert (await login(c, a.email, "wrong-guess-1")).status_code == 401
        async with asgi_client(other, client_ip="127.66.2.9") as fresh:
            r = await login(fresh, a.email, "wrong-guess-1")
            assert r.status_code == 429
            assert (
                0
                < int(r.headers["retry-after"])
                <= other.state.context.settings.LOGIN_THROTTLE_WINDOW_SECONDS
            )
        # Another account is not affected.
        async with asgi_client(other, client_ip="127.66.2.9") as fresh:
            assert (await login(fresh, unique_email(), "wrong-guess-1")).status_code == 401


@pytest.mark.slow
async def test_guessing_from_many_addresses_cannot_lock_the_owner_out_where_they_log_in(
    app: FastAPI,
) -> None:
    """Guessers on enough addresses reach the account-wide limit; the owner, at an
    address they logged in from before, still logs in (without waiting), while a new
    address meets the limit."""
    async with _app_with(
        app,
        LOGIN_MAX_FAILURES_PER_ACCOUNT=4,
        LOGIN_DELAY_AFTER_FAILURES=1,
        LOGIN_DELAY_MAX_SECONDS=30.0,
    ) as other:
        async with asgi_client(other, client_ip="127.66.5.1") as home:
            a = await new_account(home)  # registers and logs in from home
        for n in range(4):
            async with asgi_client(other, client_ip=f"127.66.6.{n + 1}") as c:
                r = await login(c, a.email, "wrong-guess-1")
                assert r.status_code in (401, 429)
        async with asgi_client(other, client_ip="127.66.6.9") as stranger:
            assert (await login(stranger, a.email, a.password)).status_code == 429
        async with other.state.context.db.sessionmaker() as session:
            service = await get_auth_service(session, other.state.context)
            assert await service._known_address(a.email, "127.66.5.1")
            assert not await service._known_address(a.email, "127.66.6.9")
        async with asgi_client(other, client_ip="127.66.5.1") as home:
            r = await asyncio.wait_for(login(home, a.email, a.password), 25)  # no 30 s delay
            assert r.status_code == 200
            # At home only the per-address limit applies (LOGIN_MAX_FAILURES, 5).
            for _ in range(5):
                assert (await login(home, a.email, "wrong-guess-1")).status_code == 401
            assert (await login(home, a.email, a.password)).status_code == 429


async def test_known_addresses_are_forgotten_after_their_days(app: FastAPI) -> None:
    from app.modules.auth.service import known_address_key
    from app.modules.limits.service import LimitService

    async with asgi_client(app, client_ip="127.66.7.1") as c:
        a = await new_account(c)
    key = known_address_key(a.email, "127.66.7.1")
    old = datetime.now(UTC) - timedelta(days=31)
    async with app.state.context.db.sessionmaker() as session:
        # Housekeeping of attempts leaves a remembered address alone ...
        await session.execute(update(RateEvent).where(RateEvent.key == key).values(created_at=old))
        await session.commit()
        await LimitService(session).purge(datetime.now(UTC))
        assert (await session.execute(select(RateEvent).where(RateEvent.key == key))).first()
        # ... the auth service forgets it after LOGIN_KNOWN_ADDRESS_DAYS (30).
        service = await get_auth_service(session, app.state.context)
        await service.purge_expired()
        assert not (await session.execute(select(RateEvent).where(RateEvent.key == key))).first()
        assert not await service._known_address(a.email, "127.66.7.1")


@pytest.mark.slow
async def test_attempts_on_an_account_under_attack_wait_longer_and_longer(
    app: FastAPI,
) -> None:
    """Past a few failures across addresses, each attempt on the account waits an
    increasing, capped time before its password is checked; the owner still gets in."""
    async with _app_with(app, LOGIN_DELAY_AFTER_FAILURES=2, LOGIN_DELAY_MAX_SECONDS=1.0) as other:
        async with asgi_client(other) as c:
            a = await new_account(c)
        delays = [await _login_delay(other, a.email)]
        for n in range(4):
            async with asgi_client(other, client_ip=f"127.66.3.{n + 1}") as c:
                assert (await login(c, a.email, "wrong-guess-1")).status_code == 401
            delays.append(await _login_delay(other, a.email))
        assert delays == [0.0, 0.0, 0.5, 1.0, 1.0], delays
        async with asgi_client(other, client_ip="127.66.3.9") as owner:
            assert (await login(owner, a.email, a.password)).status_code == 200
        # An unknown account is slowed the same way (no hint about which exist).
        ghost = unique_email()
        for n in range(2):
            async with asgi_client(other, client_ip=f"127.66.4.{n + 1}") as c:
                assert (await login(c, ghost, "wrong-guess-1")).status_code == 401
        assert await _login_delay(other, ghost) == 0.5


# --- issue 14: the refresh cookie is not for other sites (item 12) -----------------------

FOREIGN_ORIGIN = "https://evil.example"
# What a cross-site page can send without a preflight: a form, or plain text.
SIMPLE_BODIES = {
    "empty form": ({"content-type": "application/x-www-form-urlencoded"}, b""),
    "empty text": ({"content-type": "text/plain"}, b""),
    "form": ({"content-type": "application/x-www-form-urlencoded"}, b"refresh_token=x"),
    "text": ({"content-type": "text/plain"}, b'{"hello": "world"}'),
    "no type": ({}, b""),
}


async def test_a_cross_site_page_cannot_use_the_refresh_cookie(client: httpx.AsyncClient) -> None:
    a = await new_account(client)
    assert (await login(client, a.email, a.password)).status_code == 200  # sets the cookie
    cookie = client.cookies["refresh_token"]
    for route in ("refresh", "logout"):
        for label, (headers, content) in SIMPLE_BODIES.items():
            for site in ({"Origin": FOREIGN_ORIGIN}, {"Origin": "null"}):
                r = await client.post(
                    f"{API}/auth/{route}", headers={**headers, **site}, content=content
                )
                assert r.status_code == 403, (route, label, site, r.status_code, r.text)
                assert "origin" in r.json()["detail"].lower()
                assert "set-cookie" not in r.headers
            # No Origin, but the browser says the request comes from another site.
            r = await client.post(
                f"{API}/auth/{route}",
                headers={**headers, "Sec-Fetch-Site": "cross-site"},
                content=content,
            )
            assert r.status_code == 403, (route, label, r.status_code, r.text)
    # The cookie was neither rotated nor revoked: it still renews, from the API's own
    # origin (a page it serves) and without any Origin (a non-browser client).
    assert client.cookies["refresh_token"] == cookie
    r = await client.post(
        f"{API}/auth/refresh",
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 200, r.text
    assert (await client.post(f"{API}/auth/refresh")).status_code == 200
    # A token in the JSON body is not ambient authority: any origin may present it.
    client.cookies.clear()
    r = await client.post(
        f"{API}/auth/refresh",
        headers={"Origin": FOREIGN_ORIGIN},
        json={"refresh_token": a.refresh_token},
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{API}/auth/logout",
        headers={"Origin": FOREIGN_ORIGIN},
        json={"refresh_token": r.json()["refresh_token"]},
    )
    assert r.status_code == 204


async def test_origins_in_cors_origins_may_use_the_cookie(app: FastAPI) -> None:
    async with (
        _app_with(app, CORS_ORIGINS=["https://app.example.id"]) as other,
        asgi_client(other) as c,
    ):
        a = await new_account(c)
        assert (await login(c, a.email, a.password)).status_code == 200
        allowed = {"Origin": "https://app.example.id", "Sec-Fetch-Site": "same-site"}
        r = await c.post(f"{API}/auth/refresh", headers=allowed)
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == "https://app.example.id"
        r = await c.post(f"{API}/auth/refresh", headers={"Origin": "https://app.example.id.evil"})
        assert r.status_code == 403
        r = await c.post(f"{API}/auth/logout", headers=allowed)
        assert r.status_code == 204
        assert (await c.post(f"{API}/auth/refresh")).status_code == 401
