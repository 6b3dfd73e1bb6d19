"""Creating accounts and tokens through the public API, as clients do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

API = "/api/v1"
DEFAULT_PASSWORD = "Rahasia-Warung-123"


def unique_email(prefix: str = "owner") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


@dataclass
class Account:
    id: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(
    client: httpx.AsyncClient,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    name: str = "Bu Sari",
) -> httpx.Response:
    return await client.post(
        f"{API}/auth/register",
        json={"email": email or unique_email(), "name": name, "password": password},
    )


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


async def new_account(client: httpx.AsyncClient, password: str = DEFAULT_PASSWORD) -> Account:
    email = unique_email()
    r = await register(client, email, password)
    assert r.status_code == 201, r.text
    r = await login(client, email, password)
    assert r.status_code == 200, r.text
    tokens = r.json()
    client.cookies.clear()  # tests pass tokens explicitly unless they test the cookie
    me = await client.get(f"{API}/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200, me.text
    return Account(
        me.json()["id"], email, password, tokens["access_token"], tokens["refresh_token"]
    )
