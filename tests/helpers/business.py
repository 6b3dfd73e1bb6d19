"""An owner with a business profile, and their money, over the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers.accounts import API, Account, new_account


async def owner_with_business(
    client: httpx.AsyncClient, name: str = "Warung Bu Sari", **extra: Any
) -> Account:
    """A new account with a business profile (`extra` goes into the profile)."""
    owner = await new_account(client)
    r = await client.post(
        f"{API}/business",
        headers=owner.headers,
        json={"name": name, "category": "Kuliner", "stage": "startup", **extra},
    )
    assert r.status_code == 201, r.text
    return owner


async def category_id(client: httpx.AsyncClient, owner: Account, type_: str, name: str) -> str:
    r = await client.get(f"{API}/finance/categories", headers=owner.headers, params={"type": type_})
    return next(c["id"] for c in r.json() if c["name"] == name)


async def record(client: httpx.AsyncClient, owner: Account, **body: Any) -> httpx.Response:
    """POST a transaction (`body` is its JSON)."""
    return await client.post(f"{API}/finance/transactions", headers=owner.headers, json=body)
