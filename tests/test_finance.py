"""Business profiles, finance and gamification over the API."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jsonschema
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select

from app.core.config import Settings
from tests.conftest import ADMIN_PASSWORD, asgi_client
from tests.helpers.accounts import API, Account, bearer, login, new_account
from tests.helpers.business import category_id, owner_with_business, record

JAKARTA = ZoneInfo("Asia/Jakarta")


# --- business profile -------------------------------------------------------------------


async def test_business_profile_lifecycle(client: httpx.AsyncClient) -> None:
    owner = await new_account(client)
    assert (await client.get(f"{API}/business/me", headers=owner.headers)).status_code == 404
    body = {
        "name": "Kopi Nusantara",
        "category": "Minuman",
        "description": "Kedai kopi kecil\ndi pasar",
        "stage": "growth",
        "target_market": "mahasiswa",
        "primary_goal": "omzet 10 juta/bulan",
        "address": {
            "province": "Jawa Barat",
            "city": "Bandung",
            "district": "Coblong",
            "street": "Jl. Dago 1",
        },
    }
    r = await client.post(f"{API}/business", headers=owner.headers, json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["total_points"] == 0 and created["level"]["name"] == "Pemula"
    assert created["address"]["city"] == "Bandung" and created["ai_context"] == {}
    assert (
        await client.post(f"{API}/business", headers=owner.headers, json=body)
    ).status_code == 409

    r = await client.patch(
        f"{API}/business/me",
        headers=owner.headers,
        json={"stage": "established", "ai_context": {"focus": "stok"}, "address": None},
    )
    assert r.status_code == 200
    assert r.json()["stage"] == "established" and r.json()["ai_context"] == {"focus": "stok"}
    assert r.json()["address"] is None

    for forbidden in (
        {"total_points": 99999},
        {"level_id": 6},
        {"level": {"id": 6}},
        {"achievements": []},
    ):
        r = await client.patch(f"{API}/business/me", headers=owner.headers, json=forbidden)
        assert r.status_code == 422, forbidden
    assert (await client.get(f"{API}/business/me", headers=owner.headers)).json()[
        "total_points"
    ] == 0

    levels = (await client.get(f"{API}/business/levels", headers=owner.headers)).json()
    assert [lv["required_points"] for lv in levels] == sorted(
        lv["required_points"] for lv in levels
    )
    assert levels[0]["required_points"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "category": "x"},
        {"name": "a\x00b", "category": "x"},
        {"name": "x" * 10_000, "category": "x"},
        {"name": "ok", "category": "x", "stage": "unicorn"},
        {"name": "ok", "category": "x", "timezone": "Europe/Paris"},
        {"name": "ok", "category": "x", "address": {"planet": "Mars"}},
        {"name": "ok", "category": "x", "total_points": 5},
    ],
)
async def test_bad_business_input_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    owner = await new_account(client)
    r = await client.post(f"{API}/business", headers=owner.headers, json=body)
    assert r.status_code == 422, r.text


async def test_parallel_profile_creation_gives_one(client: httpx.AsyncClient) -> None:
    owner = await new_account(client)
    results = await asyncio.gather(
        *(
            client.post(
                f"{API}/business", headers=owner.headers, json={"name": f"T{i}", "category": "x"}
            )
            for i in range(6)
        )
    )
    assert sorted(r.status_code for r in results) == [201] + [409] * 5


async def test_ai_context_is_bounded(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    r = await client.patch(
        f"{API}/business/me", headers=owner.headers, json={"ai_context": {"x": "y" * 20_000}}
    )
    assert r.status_code == 422


# --- categories and transactions --------------------------------------------------------


async def test_categories_defaults_custom_and_scoping(client: httpx.AsyncClient) -> None:
    alice = await owner_with_business(client)
    bob = await owner_with_business(client, "Toko Bob")
    cats = (await client.get(f"{API}/finance/categories", headers=alice.headers)).json()
    assert {"Penjualan", "Bahan Baku"} <= {c["name"] for c in cats} and all(
        c["is_default"] for c in cats
    )

    r = await client.post(
        f"{API}/finance/categories",
        headers=alice.headers,
        json={"type": "expense", "name": "Kemasan"},
    )
    assert r.status_code == 201 and r.json()["is_default"] is False
    mine = r.json()["id"]
    for dup in ({"type": "expense", "name": "kemasan"}, {"type": "expense", "name": "GAJI"}):
        assert (
            await client.post(f"{API}/finance/categories", headers=alice.headers, json=dup)
        ).status_code == 409
    # The same name for the other type, or for another business, is fine.
    assert (
        await client.post(
            f"{API}/finance/categories",
            headers=alice.headers,
            json={"type": "income", "name": "Kemasan"},
        )
    ).status_code == 201
    assert (
        await client.post(
            f"{API}/finance/categories",
            headers=bob.headers,
            json={"type": "expense", "name": "Kemasan"},
        )
    ).status_code == 201

    assert mine not in [
        c["id"] for c in (await client.get(f"{API}/finance/categories", headers=bob.headers)).json()
    ]
    assert (
        await client.patch(
            f"{API}/finance/categories/{mine}", headers=bob.headers, json={"name": "x"}
        )
    ).status_code == 404
    assert (
        await client.delete(f"{API}/finance/categories/{mine}", headers=bob.headers)
    ).status_code == 404
    r = await record(client, bob, type="expense", amount=1000, category_id=mine)
    assert r.status_code == 422 and "no such category" in r.json()["detail"]

    default = await category_id(client, alice, "expense", "Gaji")
    assert (
        await client.patch(
            f"{API}/finance/categories/{default}", headers=alice.headers, json={"name": "x"}
        )
    ).status_code == 403
    r = await client.patch(
        f"{API}/finance/categories/{mine}", headers=alice.headers, json={"name": "Kemasan Plastik"}
    )
    assert r.status_code == 200 and r.json()["name"] == "Kemasan Plastik"
    assert (
        await record(client, alice, type="expense", amount=5000, category_id=mine)
    ).status_code == 201
    assert (
        await client.delete(f"{API}/finance/categories/{mine}", headers=alice.headers)
    ).status_code == 409


async def test_rename_conflicts_and_refused_values_match_the_schema(
    client: httpx.AsyncClient,
) -> None:
    """Found by tests/test_fuzz.py: renaming a category onto a taken name is a 409 the
    schema did not declare, and the service's 422s carry a message where the schema
    promised only a list of field errors."""
    owner = await owner_with_business(client)
    created = []
    for name in ("Kemasan", "Plastik"):
        r = await client.post(
            f"{API}/finance/categories",
            headers=owner.headers,
            json={"type": "expense", "name": name},
        )
        assert r.status_code == 201
        created.append(r.json()["id"])
    r = await client.patch(
        f"{API}/finance/categories/{created[1]}", headers=owner.headers, json={"name": "KEMASAN"}
    )
    assert r.status_code == 409, r.text
    spec = (await client.get(f"{API}/openapi.json")).json()
    patch = spec["paths"][f"{API}/finance/categories/{{category_id}}"]["patch"]
    assert "409" in patch["responses"]

    r = await record(client, owner, type="expense", amount=1000, category_id=str(uuid.uuid4()))
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    field_errors = await record(client, owner, type="expense", amount=0)
    assert field_errors.status_code == 422 and isinstance(field_errors.json()["detail"], list)
    declared = spec["paths"][f"{API}/finance/transactions"]["post"]["responses"]["422"]
    schema = {
        **declared["content"]["application/json"]["schema"],
        "components": spec["components"],
    }
    for body in (r.json(), field_errors.json()):
        jsonschema.validate(body, schema)


async def test_transaction_crud_and_filters(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    sales = await category_id(client, owner, "income", "Penjualan")
    rent = await category_id(client, owner, "expense", "Sewa")
    r = await record(
        client,
        owner,
        type="income",
        amount=150000,
        category_id=sales,
        note="nasi goreng 10 porsi",
        occurred_at="2026-11-02T09:00:00",
    )
    assert r.status_code == 201, r.text
    tx = r.json()
    assert (
        tx["amount"] == 150000 and tx["category_name"] == "Penjualan" and tx["points_awarded"] == 5
    )
    assert tx["occurred_at"].startswith("2026-11-02T02:00:00")  # 09:00 WIB
    await record(
        client,
        owner,
        type="expense",
        amount=2_000_000,
        category_id=rent,
        note="sewa kios",
        occurred_at="2026-11-01T08:00:00+07:00",
    )

    page = (await client.get(f"{API}/finance/transactions", headers=owner.headers)).json()
    assert page["total"] == 2 and page["items"][0]["id"] == tx["id"]  # newest first
    for params, expected in (
        ({"type": "expense"}, 1),
        ({"category_id": sales}, 1),
        ({"q": "NASI"}, 1),
        ({"q": "%"}, 0),
        ({"start": "2026-11-02", "end": "2026-11-02"}, 1),
        ({"start": "2026-11-01", "end": "2026-11-30"}, 2),
    ):
        r = await client.get(f"{API}/finance/transactions", headers=owner.headers, params=params)
        assert r.status_code == 200 and r.json()["total"] == expected, params

    r = await client.patch(
        f"{API}/finance/transactions/{tx['id']}",
        headers=owner.headers,
        json={"amount": 175000, "note": "koreksi"},
    )
    assert r.status_code == 200 and r.json()["amount"] == 175000
    r = await client.patch(
        f"{API}/finance/transactions/{tx['id']}", headers=owner.headers, json={"type": "expense"}
    )
    assert r.status_code == 422 and "income category" in r.json()["detail"]
    assert (
        await client.get(f"{API}/finance/transactions/{tx['id']}", headers=owner.headers)
    ).json()["note"] == "koreksi"

    other = await owner_with_business(client, "Lain")
    for method in ("GET", "PATCH", "DELETE"):
        r = await client.request(
            method,
            f"{API}/finance/transactions/{tx['id']}",
            headers=other.headers,
            json={"note": "x"},
        )
        assert r.status_code == 404, method
    assert (
        await client.delete(f"{API}/finance/transactions/{tx['id']}", headers=owner.headers)
    ).status_code == 204
    assert (
        await client.get(f"{API}/finance/transactions/{tx['id']}", headers=owner.headers)
    ).status_code == 404


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"amount": 0}, 422),
        ({"amount": -5000}, 422),
        ({"amount": 1_000_000_000_001}, 422),
        ({"amount": 2**64}, 422),
        ({"amount": 99999999999999999999999999}, 422),
        ({"amount": 1500.5}, 422),
        ({"amount": "1000"}, 422),
        ({"type": "loan"}, 422),
        ({"category_id": str(uuid.uuid4())}, 422),
        ({"category_id": "not-a-uuid"}, 422),
        ({"note": "a\x00b"}, 422),
        ({"note": "x" * 501}, 422),
        ({"occurred_at": "1999-12-31T00:00:00+07:00"}, 422),
        ({"occurred_at": "2999-01-01T00:00:00"}, 422),
        ({"occurred_at": "yesterday"}, 422),
        ({"points": 100}, 422),
    ],
)
async def test_bad_transactions_are_4xx(
    client: httpx.AsyncClient, change: dict[str, Any], status: int
) -> None:
    owner = await owner_with_business(client)
    sales = await category_id(client, owner, "income", "Penjualan")
    body = {"type": "income", "amount": 10000, "category_id": sales, **change}
    r = await record(client, owner, **body)
    assert r.status_code == status, r.text
    assert (await client.get(f"{API}/finance/transactions", headers=owner.headers)).json()[
        "total"
    ] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"limit": -1},
        {"limit": 0},
        {"limit": 1000},
        {"offset": -1},
        {"offset": 2**64},
        {"start": "2026-13-01"},
        {"start": "2026-11-10", "end": "2026-11-01"},
        {"q": "a\x00"},
        {"type": "loan"},
        {"category_id": "nope"},
    ],
)
async def test_bad_list_queries_are_422(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    owner = await owner_with_business(client)
    r = await client.get(f"{API}/finance/transactions", headers=owner.headers, params=params)
    assert r.status_code == 422, r.text


async def test_finance_without_a_business_is_404_with_a_hint(client: httpx.AsyncClient) -> None:
    owner = await new_account(client)
    r = await client.get(f"{API}/finance/transactions", headers=owner.headers)
    assert r.status_code == 404 and "POST /business" in r.json()["detail"]


# --- summary ------------------------------------------------------------------------------


async def test_summary_matches_an_independent_computation(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A few hundred transactions around month ends and WIB midnights (17:00 UTC)."""
    owner = await owner_with_business(client)
    business = (await client.get(f"{API}/business/me", headers=owner.headers)).json()
    cats = (await client.get(f"{API}/finance/categories", headers=owner.headers)).json()
    rng = random.Random(7)
    rows = []
    from app.modules.finance.models import Transaction

    async with app.state.context.db.sessionmaker() as session:
        for _ in range(400):
            cat = rng.choice(cats)
            base = datetime(
                2026, rng.choice([1, 2, 3, 10, 11]), 1, 17, 0, tzinfo=UTC
            )  # 00:00 WIB on the 2nd
            when = base + timedelta(
                days=rng.choice([-1, 0, 27, 28, 29, 30]), minutes=rng.randint(-90, 90)
            )
            amount = rng.randint(1, 5_000_000)
            rows.append((when, cat["type"], amount, cat["id"]))
            session.add(
                Transaction(
                    business_id=uuid.UUID(business["id"]),
                    type=cat["type"],
                    amount=amount,
                    category_id=uuid.UUID(cat["id"]),
                    occurred_at=when,
                )
            )
        await session.commit()

    def expected(start: date, end: date) -> dict[str, Any]:
        inside = [r for r in rows if start <= r[0].astimezone(JAKARTA).date() <= end]
        income = sum(a for _, t, a, _ in inside if t == "income")
        expense = sum(a for _, t, a, _ in inside if t == "expense")
        by_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
        by_cat: dict[str, int] = defaultdict(int)
        for when, kind, amount, cat in inside:
            by_day[when.astimezone(JAKARTA).date()][kind == "expense"] += amount
            by_cat[cat] += amount
        return {
            "income": income,
            "expense": expense,
            "count": len(inside),
            "by_day": by_day,
            "by_cat": by_cat,
        }

    for params, start, end in (
        ({"period": "month", "date": "2026-02-15"}, date(2026, 2, 1), date(2026, 2, 28)),
        (
            {"period": "custom", "start": "2026-01-30", "end": "2026-03-02"},
            date(2026, 1, 30),
            date(2026, 3, 2),
        ),
        ({"period": "day", "date": "2026-11-01"}, date(2026, 11, 1), date(2026, 11, 1)),
        ({"period": "week", "date": "2026-10-01"}, date(2026, 9, 28), date(2026, 10, 4)),
        ({"period": "year", "date": "2026-06-01"}, date(2026, 1, 1), date(2026, 12, 31)),
    ):
        r = await client.get(f"{API}/finance/summary", headers=owner.headers, params=params)
        assert r.status_code == 200, r.text
        got, want = r.json(), expected(start, end)
        assert (got["start"], got["end"]) == (start.isoformat(), end.isoformat())
        assert (got["income"], got["expense"], got["count"]) == (
            want["income"],
            want["expense"],
            want["count"],
        ), params
        assert got["net"] == want["income"] - want["expense"]
        assert {c["category_id"]: c["total"] for c in got["by_category"]} == dict(want["by_cat"])
        if got["granularity"] == "day":
            assert len(got["series"]) == (end - start).days + 1
            for point in got["series"]:
                day = date.fromisoformat(point["bucket"])
                assert [point["income"], point["expense"]] == want["by_day"].get(day, [0, 0]), day
        else:
            monthly: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for day, (inc, exp) in want["by_day"].items():
                monthly[day.replace(day=1).isoformat()][0] += inc
                monthly[day.replace(day=1).isoformat()][1] += exp
            assert {
                p["bucket"]: [p["income"], p["expense"]]
                for p in got["series"]
                if p["income"] or p["expense"]
            } == dict(monthly)


@pytest.mark.parametrize(
    "params",
    [
        {"period": "fortnight"},
        {"period": "custom"},
        {"period": "custom", "start": "2026-02-01"},
        {"period": "custom", "start": "2026-02-10", "end": "2026-02-01"},
        {"period": "custom", "start": "1990-01-01", "end": "2026-01-01"},
        {"period": "month", "date": "2026-02-30"},
    ],
)
async def test_bad_summary_queries_are_422(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    owner = await owner_with_business(client)
    r = await client.get(f"{API}/finance/summary", headers=owner.headers, params=params)
    assert r.status_code == 422, r.text
    assert "detail" in r.json()


async def test_csv_export(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    sales = await category_id(client, owner, "income", "Penjualan")
    await record(
        client,
        owner,
        type="income",
        amount=25000,
        category_id=sales,
        note='=HYPERLINK("x")',
        occurred_at="2026-11-03T10:00:00",
    )
    r = await client.get(
        f"{API}/finance/transactions/export",
        headers=owner.headers,
        params={"start": "2026-11-01", "end": "2026-11-30"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-export-truncated"] == "false"
    assert r.content.startswith(b"\xef\xbb\xbf")  # a BOM, so spreadsheets read UTF-8
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["occurred_at", "type", "amount", "category", "note", "id"]
    assert rows[1][1:4] == ["income", "25000", "Penjualan"]
    assert rows[1][4].startswith("'=")  # no formula injection into spreadsheets
    bad = await client.get(
        f"{API}/finance/transactions/export",
        headers=owner.headers,
        params={"start": "2026-01-01", "end": "2027-06-01"},
    )
    assert bad.status_code == 422


# --- gamification -------------------------------------------------------------------------


async def test_points_cap_level_achievements_and_deletion(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    sales = await category_id(client, owner, "income", "Penjualan")
    awarded = []
    ids = []
    for i in range(12):
        r = await record(client, owner, type="income", amount=1000 + i, category_id=sales)
        awarded.append(r.json()["points_awarded"])
        ids.append(r.json()["id"])
    assert awarded == [5] * 10 + [0, 0]  # the daily cap: 10 awarded entries
    stats = (await client.get(f"{API}/gamification/me", headers=owner.headers)).json()
    assert stats["total_points"] == 50 and stats["level"]["name"] == "Pemula"
    assert stats["next_level"]["name"] == "Tekun" and stats["points_to_next_level"] == 50
    assert [a["code"] for a in stats["unlocked"]] == ["first_transaction"]
    assert stats["recent_events"][0]["reason"] == "transaction_recorded"

    # Deleting an entry that earned points takes them back; one capped at 0 changes nothing.
    assert (
        await client.delete(f"{API}/finance/transactions/{ids[0]}", headers=owner.headers)
    ).status_code == 204
    assert (
        await client.delete(f"{API}/finance/transactions/{ids[11]}", headers=owner.headers)
    ).status_code == 204
    stats = (await client.get(f"{API}/gamification/me", headers=owner.headers)).json()
    assert stats["total_points"] == 45
    # ... and the cap still counts the deleted one: no farming by delete and re-record.
    r = await record(client, owner, type="income", amount=1000, category_id=sales)
    assert r.json()["points_awarded"] == 0

    achievements = (
        await client.get(f"{API}/gamification/achievements", headers=owner.headers)
    ).json()
    assert {a["code"]: a["unlocked"] for a in achievements}["first_transaction"] is True
    assert {a["code"]: a["unlocked"] for a in achievements}["points_100"] is False


def _zones_whose_day_begins_later() -> tuple[str, str]:
    """(from, to): two of Indonesia's zones where `to`'s day began after `from`'s, now.

    Jakarta and Jayapura are two hours apart, so one of them always began its day later:
    moving there is what would open a fresh daily cap."""
    from app.modules.gamification.service import local_day_start

    a, b = "Asia/Jakarta", "Asia/Jayapura"
    return (a, b) if local_day_start(b) > local_day_start(a) else (b, a)


async def _backdate_transaction_awards(app: FastAPI, owner: Account, to: datetime) -> None:
    from sqlalchemy import update

    from app.modules.business.models import BusinessProfile
    from app.modules.gamification.models import PointEvent

    async with app.state.context.db.sessionmaker() as session:
        business_id = await session.scalar(
            select(BusinessProfile.id).where(BusinessProfile.user_id == uuid.UUID(owner.id))
        )
        await session.execute(
            update(PointEvent)
            .where(
                PointEvent.business_id == business_id, PointEvent.reason == "transaction_recorded"
            )
            .values(created_at=to)
        )
        await session.commit()


async def test_changing_the_time_zone_does_not_open_a_fresh_daily_cap(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """The owner reaches today's cap early in the day of one zone, then moves to a zone
    whose day began later (as at 23:30 in Jakarta, which is 01:30 in Jayapura): the
    entries that earned points lie before the new zone's midnight, yet the cap holds."""
    from app.modules.gamification.service import local_day_start

    before, after = _zones_whose_day_begins_later()
    owner = await owner_with_business(client, timezone=before)
    sales = await category_id(client, owner, "income", "Penjualan")
    for i in range(10):
        r = await record(client, owner, type="income", amount=1000 + i, category_id=sales)
        assert r.json()["points_awarded"] == 5
    # Earned just after `before`'s midnight: today there, yesterday in `after`.
    await _backdate_transaction_awards(app, owner, local_day_start(before) + timedelta(minutes=1))
    r = await record(client, owner, type="income", amount=1, category_id=sales)
    assert r.json()["points_awarded"] == 0  # the cap of `before`'s day holds

    r = await client.patch(f"{API}/business/me", headers=owner.headers, json={"timezone": after})
    assert r.status_code == 200 and r.json()["timezone"] == after
    for _ in range(3):
        r = await record(client, owner, type="income", amount=1, category_id=sales)
        assert r.status_code == 201 and r.json()["points_awarded"] == 0
    stats = (await client.get(f"{API}/gamification/me", headers=owner.headers)).json()
    assert stats["total_points"] == 50

    # Moving back and forth gains nothing either.
    for zone in (before, after, before):
        r = await client.patch(f"{API}/business/me", headers=owner.headers, json={"timezone": zone})
        assert r.status_code == 200
        r = await record(client, owner, type="income", amount=1, category_id=sales)
        assert r.json()["points_awarded"] == 0


async def test_a_day_after_a_time_zone_change_the_cap_counts_from_local_midnight(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    from sqlalchemy import update

    from app.modules.business.models import BusinessProfile
    from app.modules.gamification.service import local_day_start

    before, after = _zones_whose_day_begins_later()
    owner = await owner_with_business(client, timezone=before)
    sales = await category_id(client, owner, "income", "Penjualan")
    for i in range(10):
        await record(client, owner, type="income", amount=1000 + i, category_id=sales)
    r = await client.patch(f"{API}/business/me", headers=owner.headers, json={"timezone": after})
    assert r.status_code == 200
    # The change is a day old, and the capped entries were yesterday in the new zone.
    await _backdate_transaction_awards(app, owner, local_day_start(after) - timedelta(minutes=1))
    async with app.state.context.db.sessionmaker() as session:
        await session.execute(
            update(BusinessProfile)
            .where(BusinessProfile.user_id == uuid.UUID(owner.id))
            .values(timezone_changed_at=datetime.now(UTC) - timedelta(hours=25))
        )
        await session.commit()
    r = await record(client, owner, type="income", amount=1, category_id=sales)
    assert r.json()["points_awarded"] == 5  # a new local day: a new cap
    # A PATCH that keeps the zone is no change: the day's cap stays local.
    r = await client.patch(f"{API}/business/me", headers=owner.headers, json={"timezone": after})
    r = await record(client, owner, type="income", amount=1, category_id=sales)
    assert r.json()["points_awarded"] == 5


async def test_leaderboard_shows_names_and_my_rank(app: FastAPI) -> None:
    async with asgi_client(app) as c:
        owners = [await owner_with_business(c, f"Board {uuid.uuid4().hex[:6]}") for _ in range(3)]
        sales = await category_id(c, owners[0], "income", "Penjualan")
        for i, owner in enumerate(owners):
            for _ in range(i + 1):
                await record(c, owner, type="income", amount=1000, category_id=sales)
        r = await c.get(
            f"{API}/gamification/leaderboard", headers=owners[0].headers, params={"limit": 1}
        )
        assert r.status_code == 200
        board = r.json()
        assert len(board["entries"]) == 1 and board["entries"][0]["rank"] == 1
        me = board["me"]
        assert me["points"] == 5 and me["rank"] > 1
        text = r.text
        for owner in owners:
            assert owner.id not in text and owner.email not in text
        assert "business_id" not in text and '"id"' not in text
        for params in ({"limit": 0}, {"limit": 101}, {"limit": -3}, {"limit": 2**70}):
            assert (
                await c.get(
                    f"{API}/gamification/leaderboard", headers=owners[0].headers, params=params
                )
            ).status_code == 422


@pytest.mark.postgres_only
async def test_fifty_parallel_transactions_keep_exact_totals(settings: Settings) -> None:
    """No lost update, no duplicate unlock: 50 entries at once for one business.

    A second app on the suite's database with the daily cap lifted, so all 50 earn
    points and cross a level and several achievement thresholds at the same moment."""
    from sqlalchemy import func, select

    from app.main import create_app
    from app.modules.gamification.models import BusinessAchievement, PointEvent

    app = create_app(settings.model_copy(update={"POINTS_TRANSACTION_DAILY_CAP": 100}))
    async with LifespanManager(app), asgi_client(app) as c:
        owner = await owner_with_business(c)
        sales = await category_id(c, owner, "income", "Penjualan")
        business_id = uuid.UUID(
            (await c.get(f"{API}/business/me", headers=owner.headers)).json()["id"]
        )
        results = await asyncio.gather(
            *(
                record(c, owner, type="income", amount=1000 + i, category_id=sales)
                for i in range(50)
            )
        )
        assert [r.status_code for r in results] == [201] * 50, {r.text for r in results}
        stats = (await c.get(f"{API}/gamification/me", headers=owner.headers)).json()
        async with app.state.context.db.sessionmaker() as session:
            events = await session.scalar(
                select(func.count())
                .select_from(PointEvent)
                .where(PointEvent.business_id == business_id)
            )
            unlocks = await session.scalar(
                select(func.count())
                .select_from(BusinessAchievement)
                .where(BusinessAchievement.business_id == business_id)
            )
    assert stats["total_points"] == 250 and stats["level"]["name"] == "Tekun"
    assert sorted(a["code"] for a in stats["unlocked"]) == [
        "first_transaction",
        "points_100",
        "transactions_50",
    ]
    assert events == 50 and unlocks == 3


# --- admin: levels and achievements ----------------------------------------------------


async def test_admin_levels_and_achievements(client: httpx.AsyncClient, app: FastAPI) -> None:
    r = await login(client, app.state.context.settings.FIRST_ADMIN_EMAIL, ADMIN_PASSWORD)
    admin = bearer(r.json()["access_token"])
    user = await new_account(client)
    assert (await client.get(f"{API}/admin/levels", headers=user.headers)).status_code == 403
    assert (await client.get(f"{API}/admin/levels")).status_code == 401

    levels = (await client.get(f"{API}/admin/levels", headers=admin)).json()
    top = max(levels, key=lambda lv: lv["order"])
    bad = [
        {"name": "Turun", "required_points": top["required_points"] - 1, "order": top["order"] + 1},
        {
            "name": levels[0]["name"],
            "required_points": top["required_points"] + 10,
            "order": top["order"] + 1,
        },
    ]
    for body in bad:
        assert (
            await client.post(f"{API}/admin/levels", headers=admin, json=body)
        ).status_code == 409
    assert (
        await client.post(
            f"{API}/admin/levels",
            headers=admin,
            json={"name": "x", "required_points": -1, "order": 99},
        )
    ).status_code == 422
    r = await client.post(
        f"{API}/admin/levels",
        headers=admin,
        json={
            "name": f"Legenda {uuid.uuid4().hex[:4]}",
            "required_points": top["required_points"] + 1000,
            "order": top["order"] + 1,
        },
    )
    assert r.status_code == 201, r.text
    new_level = r.json()
    assert (
        await client.patch(
            f"{API}/admin/levels/{new_level['id']}", headers=admin, json={"required_points": 1}
        )
    ).status_code == 409
    assert (
        await client.patch(f"{API}/admin/levels/{2**40}", headers=admin, json={"name": "x"})
    ).status_code == 422
    assert (
        await client.delete(f"{API}/admin/levels/{new_level['id']}", headers=admin)
    ).status_code == 204

    # The base level is held by businesses and there is nothing below it: refused.
    await owner_with_business(client)
    r = await client.delete(f"{API}/admin/levels/{levels[0]['id']}", headers=admin)
    assert r.status_code == 409 and "base level cannot be deleted" in r.json()["detail"]

    r = await client.post(
        f"{API}/admin/achievements", headers=admin, json={"code": "no_rule", "title": "x"}
    )
    assert r.status_code == 422
    code = f"p_{uuid.uuid4().hex[:6]}"
    r = await client.post(
        f"{API}/admin/achievements",
        headers=admin,
        json={"code": code, "title": "Dua Ribu", "required_points": 2000},
    )
    assert r.status_code == 201
    achievement = r.json()
    assert (
        await client.post(
            f"{API}/admin/achievements",
            headers=admin,
            json={"code": code, "title": "y", "required_points": 1},
        )
    ).status_code == 409
    r = await client.patch(
        f"{API}/admin/achievements/{achievement['id']}",
        headers=admin,
        json={"title": "Dua Ribu Poin"},
    )
    assert r.status_code == 200 and r.json()["title"] == "Dua Ribu Poin"
    assert (
        await client.delete(f"{API}/admin/achievements/{achievement['id']}", headers=admin)
    ).status_code == 204
    assert (
        await client.delete(f"{API}/admin/achievements/{achievement['id']}", headers=admin)
    ).status_code == 404

    # Each refusal above is declared in the schema (tests/test_fuzz.py found them missing).
    paths = (await client.get(f"{API}/openapi.json")).json()["paths"]
    declared = {
        ("patch", "/admin/levels/{level_id}"): {"404", "409"},
        ("delete", "/admin/levels/{level_id}"): {"404", "409"},
        ("post", "/admin/achievements"): {"409"},
        ("patch", "/admin/achievements/{achievement_id}"): {"404", "409"},
        ("delete", "/admin/achievements/{achievement_id}"): {"404"},
    }
    for (method, path), codes in declared.items():
        assert codes <= set(paths[f"{API}{path}"][method]["responses"]), (method, path)


# --- found in review: edge inputs, races, ladder consistency ------------------------------


async def test_dates_far_out_of_range_are_422_not_500(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    sales = await category_id(client, owner, "income", "Penjualan")
    for when in ("0001-01-01T00:00:00", "0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"):
        r = await record(
            client, owner, type="income", amount=1000, category_id=sales, occurred_at=when
        )
        assert r.status_code == 422, (when, r.text)
    tx = (await record(client, owner, type="income", amount=1000, category_id=sales)).json()
    r = await client.patch(
        f"{API}/finance/transactions/{tx['id']}",
        headers=owner.headers,
        json={"occurred_at": "0001-01-01T00:00:00"},
    )
    assert r.status_code == 422
    for path, params in (
        ("/finance/summary", {"period": "day", "date": "0001-01-01"}),
        ("/finance/summary", {"period": "year", "date": "9999-12-31"}),
        ("/finance/summary", {"period": "custom", "start": "9999-01-01", "end": "9999-12-31"}),
        ("/finance/transactions", {"start": "0001-01-01"}),
        ("/finance/transactions", {"end": "9999-12-31"}),
        ("/finance/transactions/export", {"start": "9999-12-30", "end": "9999-12-31"}),
    ):
        r = await client.get(API + path, headers=owner.headers, params=params)
        assert r.status_code == 422, (path, params, r.text)


async def test_nan_in_ai_context_and_long_casefolded_names(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    for raw in (b'{"ai_context": {"x": NaN}}', b'{"ai_context": {"x": Infinity}}'):
        r = await client.patch(
            f"{API}/business/me",
            content=raw,
            headers={**owner.headers, "content-type": "application/json"},
        )
        assert r.status_code == 422, r.text
    r = await client.post(
        f"{API}/finance/categories",
        headers=owner.headers,
        json={"type": "income", "name": "\u0130" * 31},
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{API}/finance/categories",
        headers=owner.headers,
        json={"type": "income", "name": "\u0130" * 31},
    )
    assert r.status_code == 409


async def test_admin_patch_nulls_are_422(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = bearer(
        (await login(client, app.state.context.settings.FIRST_ADMIN_EMAIL, ADMIN_PASSWORD)).json()[
            "access_token"
        ]
    )
    level = (await client.get(f"{API}/admin/levels", headers=admin)).json()[1]
    for body in ({"required_points": None}, {"order": None}, {"name": None}):
        assert (
            await client.patch(f"{API}/admin/levels/{level['id']}", headers=admin, json=body)
        ).status_code == 422
    achievement = (await client.get(f"{API}/admin/achievements", headers=admin)).json()[0]
    for body in ({"title": None}, {"description": None}):
        r = await client.patch(
            f"{API}/admin/achievements/{achievement['id']}", headers=admin, json=body
        )
        assert r.status_code == 422


async def test_races_between_writes_never_500(app: FastAPI) -> None:
    async with asgi_client(app) as c:
        owner = await owner_with_business(c)
        sales = await category_id(c, owner, "income", "Penjualan")
        for _ in range(5):
            cat = (
                await c.post(
                    f"{API}/finance/categories",
                    headers=owner.headers,
                    json={"type": "income", "name": f"Sementara {uuid.uuid4().hex[:6]}"},
                )
            ).json()
            results = await asyncio.gather(
                c.delete(f"{API}/finance/categories/{cat['id']}", headers=owner.headers),
                *(
                    record(c, owner, type="income", amount=1000, category_id=cat["id"])
                    for _ in range(3)
                ),
            )
            assert all(r.status_code in (201, 204, 409, 422) for r in results), [
                r.text for r in results
            ]
        ids = [
            (await record(c, owner, type="income", amount=1000, category_id=sales)).json()["id"]
            for _ in range(6)
        ]
        results = await asyncio.gather(
            *(c.delete(f"{API}/finance/transactions/{i}", headers=owner.headers) for i in ids),
            *(
                c.patch(
                    f"{API}/finance/transactions/{i}", headers=owner.headers, json={"note": "x"}
                )
                for i in ids
            ),
        )
        assert all(r.status_code in (200, 204, 404) for r in results), [r.text for r in results]


async def test_parallel_deletes_take_points_back_once(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    sales = await category_id(client, owner, "income", "Penjualan")
    ids = [
        (await record(client, owner, type="income", amount=1000, category_id=sales)).json()["id"]
        for _ in range(4)
    ]
    results = await asyncio.gather(
        *(
            client.delete(f"{API}/finance/transactions/{ids[0]}", headers=owner.headers)
            for _ in range(3)
        )
    )
    assert sorted(r.status_code for r in results) == [204, 404, 404]
    assert (await client.get(f"{API}/gamification/me", headers=owner.headers)).json()[
        "total_points"
    ] == 15


async def test_recording_and_deleting_does_not_farm_achievements(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    sales = await category_id(client, owner, "income", "Penjualan")
    for _ in range(52):
        tx = (await record(client, owner, type="income", amount=1000, category_id=sales)).json()
        assert (
            await client.delete(f"{API}/finance/transactions/{tx['id']}", headers=owner.headers)
        ).status_code == 204
    stats = (await client.get(f"{API}/gamification/me", headers=owner.headers)).json()
    assert stats["total_points"] == 0
    assert "transactions_50" not in [a["code"] for a in stats["unlocked"]]


async def test_ladder_changes_move_holders_and_stay_consistent(
    tmp_path: Path, database_url: str
) -> None:
    """On a database of its own: the ladder is global."""
    from app.main import create_app
    from tests.conftest import make_settings
    from tests.helpers.databases import fresh_database_url

    async with fresh_database_url(tmp_path, "ladder") as url:
        app = create_app(make_settings(url, tmp_path / "d", POINTS_TRANSACTION_DAILY_CAP=100))
        async with LifespanManager(app), asgi_client(app) as c:
            admin = bearer(
                (
                    await login(c, app.state.context.settings.FIRST_ADMIN_EMAIL, ADMIN_PASSWORD)
                ).json()["access_token"]
            )
            owner = await owner_with_business(c)
            sales = await category_id(c, owner, "income", "Penjualan")
            for _ in range(30):  # 150 points: "Tekun" (100)
                await record(c, owner, type="income", amount=1000, category_id=sales)
            level = lambda: c.get(f"{API}/gamification/me", headers=owner.headers)  # noqa: E731
            assert (await level()).json()["level"]["name"] == "Tekun"
            levels = {
                lv["name"]: lv for lv in (await c.get(f"{API}/admin/levels", headers=admin)).json()
            }
            r = await c.patch(
                f"{API}/admin/levels/{levels['Tekun']['id']}",
                headers=admin,
                json={"required_points": 200},
            )
            assert r.status_code == 200
            stats = (await level()).json()
            assert stats["level"]["name"] == "Pemula" and stats["next_level"]["name"] == "Tekun"
            assert stats["points_to_next_level"] == 50
            r = await c.patch(
                f"{API}/admin/levels/{levels['Tekun']['id']}",
                headers=admin,
                json={"required_points": 120},
            )
            assert (await level()).json()["level"]["name"] == "Tekun"
            assert (
                await c.delete(f"{API}/admin/levels/{levels['Tekun']['id']}", headers=admin)
            ).status_code == 204
            assert (await level()).json()["level"]["name"] == "Pemula"  # fell to the level below
            top = max(levels.values(), key=lambda lv: lv["order"])
            results = await asyncio.gather(
                c.post(
                    f"{API}/admin/levels",
                    headers=admin,
                    json={
                        "name": "A",
                        "required_points": top["required_points"] + 2000,
                        "order": top["order"] + 1,
                    },
                ),
                c.post(
                    f"{API}/admin/levels",
                    headers=admin,
                    json={
                        "name": "B",
                        "required_points": top["required_points"] + 1000,
                        "order": top["order"] + 2,
                    },
                ),
            )
            assert sorted(r.status_code for r in results) == [201, 409], [r.text for r in results]
            ladder = sorted(
                (await c.get(f"{API}/admin/levels", headers=admin)).json(),
                key=lambda lv: lv["order"],
            )
            points = [lv["required_points"] for lv in ladder]
            assert points == sorted(set(points)) and points[0] == 0


async def test_a_moment_before_local_midnight_stays_on_its_day(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    sales = await category_id(client, owner, "income", "Penjualan")
    r = await record(
        client,
        owner,
        type="income",
        amount=7000,
        category_id=sales,
        occurred_at="2024-01-31T16:59:59.999900Z",
    )
    assert r.status_code == 201
    summary = (
        await client.get(
            f"{API}/finance/summary",
            headers=owner.headers,
            params={"period": "month", "date": "2024-01-15"},
        )
    ).json()
    assert summary["income"] == 7000
    assert [p["income"] for p in summary["series"] if p["bucket"] == "2024-01-31"] == [7000]
