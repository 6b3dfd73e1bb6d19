"""An owner with a business profile, and their money, over the API."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from tests.helpers.accounts import API, Account, new_account

ROADMAP_ENDED = frozenset({"succeeded", "failed", "skipped"})


async def owner_with_business(
    client: httpx.AsyncClient, name: str | None = None, **extra: Any
) -> Account:
    """A new account with a business profile (a unique name unless one is given;
    `extra` goes into the profile, and may replace the category and stage). With an LLM
    configured, this also requests the business's first roadmap."""
    name = name or f"Warung {uuid.uuid4().hex[:6]}"
    owner = await new_account(client)
    r = await client.post(
        f"{API}/business",
        headers=owner.headers,
        json={"name": name, "category": "Kuliner", "stage": "startup", **extra},
    )
    assert r.status_code == 201, r.text
    return owner


async def roadmap_request(
    client: httpx.AsyncClient,
    owner: Account,
    *,
    until: frozenset[str] | set[str] = ROADMAP_ENDED,
    bound: float = 120.0,
    pause: float = 0.05,
) -> dict[str, Any]:
    """The owner's latest roadmap request once its status is in `until`, polling
    `GET /milestones/generation` (the bound is on the wait, never an assertion on
    speed)."""
    body: dict[str, Any] = {}
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        r = await client.get(f"{API}/milestones/generation", headers=owner.headers)
        if r.status_code == 200:
            body = r.json()
            if body["status"] in until:
                return body
        await asyncio.sleep(pause)
    raise AssertionError(f"the roadmap request did not reach {sorted(until)}: {body}")


async def category_id(client: httpx.AsyncClient, owner: Account, type_: str, name: str) -> str:
    r = await client.get(f"{API}/finance/categories", headers=owner.headers, params={"type": type_})
    return next(c["id"] for c in r.json() if c["name"] == name)


async def record(client: httpx.AsyncClient, owner: Account, **body: Any) -> httpx.Response:
    """POST a transaction (`body` is its JSON)."""
    return await client.post(f"{API}/finance/transactions", headers=owner.headers, json=body)
