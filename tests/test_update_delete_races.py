"""Updates racing deletes of the same row: every pair ends in 2xx, 404 or 409 (or the 422 a
transaction update gives for a category that is gone), never a 500, and what is stored
afterwards agrees with the answers.

Each case runs many pairs at once (asyncio.gather over the ASGI app), on the suite's
database: run the file with TEST_DATABASE_URL set for PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.main import create_app
from tests.conftest import ADMIN_PASSWORD, asgi_client, make_settings
from tests.fakes.llm_server import FakeLLMServer
from tests.helpers.accounts import API, Account, bearer, login, new_account
from tests.helpers.apps import chat_app
from tests.helpers.databases import fresh_database_url
from tests.helpers.sse import chat

PAIRS = 30


@pytest.fixture(scope="module")
async def patient_ai_app(
    database_url: str, session_tmp: Path, fake_llm_server: FakeLLMServer
) -> AsyncIterator[FastAPI]:
    """The app with the fake LLM on the suite's database, where one owner may race PAIRS
    turns at once: the per-user chat limits are not what these tests are about."""
    async with chat_app(
        database_url,
        session_tmp / "data",
        fake_llm_server,
        CHAT_MAX_PARALLEL_STREAMS=100,
        CHAT_TURNS_PER_WINDOW=1000,
    ) as application:
        yield application


@pytest.fixture
async def patient_client(patient_ai_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(patient_ai_app) as c:
        yield c


async def _owner_with_sessions(client: httpx.AsyncClient) -> tuple[Account, list[str]]:
    """A new owner with PAIRS chat sessions of one finished turn each."""
    owner = await new_account(client)
    sessions = []
    for i in range(PAIRS):
        s = await chat(client, owner.headers, f"Pertanyaan {i}")
        assert s.status == 200
        sessions.append(s.first("session")["session_id"])
    return owner, sessions


def _texts(responses: list[httpx.Response]) -> list[str]:
    return [f"{r.request.method} {r.status_code} {r.text[:200]}" for r in responses]


def _all_in(responses: list[httpx.Response], allowed: tuple[int, ...]) -> None:
    unexpected = [r for r in responses if r.status_code not in allowed]
    assert not unexpected, "\n".join(_texts(unexpected))


async def _owner(client: httpx.AsyncClient) -> Account:
    owner = await new_account(client)
    r = await client.post(
        f"{API}/business", headers=owner.headers, json={"name": "Warung Race", "category": "x"}
    )
    assert r.status_code == 201, r.text
    return owner


async def _admin(client: httpx.AsyncClient, app: FastAPI) -> dict[str, str]:
    r = await login(client, app.state.context.settings.FIRST_ADMIN_EMAIL, ADMIN_PASSWORD)
    assert r.status_code == 200, r.text
    return bearer(r.json()["access_token"])


async def _category(client: httpx.AsyncClient, owner: Account, type_: str = "income") -> str:
    r = await client.post(
        f"{API}/finance/categories",
        headers=owner.headers,
        json={"type": type_, "name": f"Race {uuid.uuid4().hex[:8]}"},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def _categories(client: httpx.AsyncClient, owner: Account) -> dict[str, dict]:
    r = await client.get(f"{API}/finance/categories", headers=owner.headers)
    assert r.status_code == 200, r.text
    return {c["id"]: c for c in r.json()}


@pytest.mark.slow
async def test_transaction_category_change_vs_category_delete(client: httpx.AsyncClient) -> None:
    owner = await _owner(client)
    cats = await _categories(client, owner)
    sales = next(i for i, c in cats.items() if c["name"] == "Penjualan")
    new_cats = [await _category(client, owner) for _ in range(PAIRS)]
    entries = []
    for _ in range(PAIRS):
        r = await client.post(
            f"{API}/finance/transactions",
            headers=owner.headers,
            json={"type": "income", "amount": 1000, "category_id": sales},
        )
        assert r.status_code == 201, r.text
        entries.append(r.json()["id"])

    results = await asyncio.gather(
        *(
            request
            for entry, cat in zip(entries, new_cats, strict=True)
            for request in (
                client.patch(
                    f"{API}/finance/transactions/{entry}",
                    headers=owner.headers,
                    json={"category_id": cat},
                ),
                client.delete(f"{API}/finance/categories/{cat}", headers=owner.headers),
            )
        )
    )
    _all_in(results, (200, 204, 404, 409, 422))

    cats = await _categories(client, owner)
    for i, (entry, cat) in enumerate(zip(entries, new_cats, strict=True)):
        patched, deleted = results[2 * i], results[2 * i + 1]
        # Both cannot win: a moved entry keeps its category alive.
        assert not (patched.status_code == 200 and deleted.status_code == 204)
        r = await client.get(f"{API}/finance/transactions/{entry}", headers=owner.headers)
        assert r.status_code == 200, r.text
        assert r.json()["category_id"] in cats
        assert r.json()["category_id"] == (cat if patched.status_code == 200 else sales)
        assert (cat in cats) == (deleted.status_code != 204)


@pytest.mark.slow
async def test_category_rename_vs_delete(client: httpx.AsyncClient) -> None:
    owner = await _owner(client)
    new_cats = [await _category(client, owner, "expense") for _ in range(PAIRS)]
    results = await asyncio.gather(
        *(
            request
            for i, cat in enumerate(new_cats)
            for request in (
                client.patch(
                    f"{API}/finance/categories/{cat}",
                    headers=owner.headers,
                    json={"name": f"Renamed {i}"},
                ),
                client.delete(f"{API}/finance/categories/{cat}", headers=owner.headers),
            )
        )
    )
    _all_in(results, (200, 204, 404, 409))
    cats = await _categories(client, owner)
    for i, cat in enumerate(new_cats):
        patched, deleted = results[2 * i], results[2 * i + 1]
        if deleted.status_code == 204:
            assert cat not in cats
        else:
            assert cat in cats and patched.status_code == 200
            assert cats[cat]["name"] == f"Renamed {i}"


@pytest.mark.slow
async def test_category_delete_vs_delete(client: httpx.AsyncClient) -> None:
    owner = await _owner(client)
    new_cats = [await _category(client, owner) for _ in range(PAIRS)]
    results = await asyncio.gather(
        *(
            client.delete(f"{API}/finance/categories/{cat}", headers=owner.headers)
            for cat in new_cats
            for _ in range(2)
        )
    )
    _all_in(results, (204, 404))
    for i in range(PAIRS):
        # Exactly one of the two deleted it.
        assert sorted(r.status_code for r in results[2 * i : 2 * i + 2]) == [204, 404]
    assert not set(new_cats) & set(await _categories(client, owner))


@pytest.mark.slow
async def test_chat_session_rename_vs_delete(
    patient_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner, sessions = await _owner_with_sessions(patient_client)
    results = await asyncio.gather(
        *(
            request
            for i, sid in enumerate(sessions)
            for request in (
                patient_client.patch(
                    f"{API}/chat/sessions/{sid}", headers=owner.headers, json={"title": f"T{i}"}
                ),
                patient_client.delete(f"{API}/chat/sessions/{sid}", headers=owner.headers),
                patient_client.delete(f"{API}/chat/sessions/{sid}", headers=owner.headers),
            )
        )
    )
    _all_in(results, (200, 204, 404, 409))
    for i, sid in enumerate(sessions):
        deletes = sorted(r.status_code for r in results[3 * i + 1 : 3 * i + 3])
        assert deletes == [204, 404], _texts(results[3 * i : 3 * i + 3])
        r = await patient_client.get(f"{API}/chat/sessions/{sid}", headers=owner.headers)
        assert r.status_code == 404
        r = await patient_client.get(f"{API}/chat/sessions/{sid}/messages", headers=owner.headers)
        assert r.status_code == 404
    r = await patient_client.get(f"{API}/chat/sessions", headers=owner.headers)
    assert r.json()["total"] == 0


@pytest.mark.slow
async def test_chat_turn_vs_session_delete(
    patient_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    """A turn that claimed its session keeps it (the delete is 409); a delete that came
    first makes the turn a 404. Never a turn writing into a deleted session."""
    owner, sessions = await _owner_with_sessions(patient_client)
    outcomes = await asyncio.gather(
        *(
            step
            for sid in sessions
            for step in (
                chat(patient_client, owner.headers, "Lagi", sid),
                patient_client.delete(f"{API}/chat/sessions/{sid}", headers=owner.headers),
            )
        )
    )
    for i, sid in enumerate(sessions):
        turn, deleted = outcomes[2 * i], outcomes[2 * i + 1]
        assert turn.status in (200, 404, 409), turn.body
        assert deleted.status_code in (204, 409), deleted.text
        if turn.status == 200:
            assert turn.names[-1] == "done", turn.names
        r = await patient_client.get(f"{API}/chat/sessions/{sid}/messages", headers=owner.headers)
        if deleted.status_code == 204:
            assert r.status_code == 404
        else:
            assert turn.status == 200 and r.status_code == 200
            assert [m["role"] for m in r.json()["items"]] == ["user", "assistant"] * 2


@pytest.mark.slow
async def test_achievement_update_vs_delete(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin = await _admin(client, app)
    ids = []
    for _ in range(PAIRS):
        r = await client.post(
            f"{API}/admin/achievements",
            headers=admin,
            json={
                "code": f"race_{uuid.uuid4().hex[:10]}",
                "title": "Race",
                "required_points": 10**11,
            },
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    results = await asyncio.gather(
        *(
            request
            for i, aid in enumerate(ids)
            for request in (
                client.patch(
                    f"{API}/admin/achievements/{aid}", headers=admin, json={"title": f"Race {i}"}
                ),
                client.delete(f"{API}/admin/achievements/{aid}", headers=admin),
                client.delete(f"{API}/admin/achievements/{aid}", headers=admin),
            )
        )
    )
    _all_in(results, (200, 204, 404, 409))
    left = {a["id"] for a in (await client.get(f"{API}/admin/achievements", headers=admin)).json()}
    for i, aid in enumerate(ids):
        deletes = sorted(r.status_code for r in results[3 * i + 1 : 3 * i + 3])
        assert deletes == [204, 404], _texts(results[3 * i : 3 * i + 3])
        assert aid not in left


@pytest.mark.slow
async def test_achievement_delete_vs_unlock(client: httpx.AsyncClient, app: FastAPI) -> None:
    """Recording a transaction unlocks achievements; one deleted at that moment is
    simply not unlocked (the recording still succeeds)."""
    admin = await _admin(client, app)
    owner = await _owner(client)
    sales = next(
        i for i, c in (await _categories(client, owner)).items() if c["name"] == "Penjualan"
    )
    ids = []
    for _ in range(PAIRS):
        r = await client.post(
            f"{API}/admin/achievements",
            headers=admin,
            json={"code": f"free_{uuid.uuid4().hex[:10]}", "title": "Free", "required_points": 0},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    results = await asyncio.gather(
        *(
            request
            for aid in ids
            for request in (
                client.post(
                    f"{API}/finance/transactions",
                    headers=owner.headers,
                    json={"type": "income", "amount": 1000, "category_id": sales},
                ),
                client.delete(f"{API}/admin/achievements/{aid}", headers=admin),
            )
        )
    )
    _all_in(results, (201, 204))
    stats = (await client.get(f"{API}/gamification/me", headers=owner.headers)).json()
    assert stats["total_points"] == 5 * min(PAIRS, 10)  # the daily cap: 10 awarded a day
    assert all(not a["code"].startswith("free_") for a in stats["unlocked"] + stats["locked"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["milestone", "task"])
async def test_milestone_update_vs_delete(client: httpx.AsyncClient, kind: str) -> None:
    owner = await _owner(client)
    ids = []
    for i in range(PAIRS // 2):
        r = await client.post(
            f"{API}/milestones",
            headers=owner.headers,
            json={"title": f"Langkah {i}", "tasks": ["Tugas"]},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json())
    if kind == "milestone":
        updates = [
            client.patch(f"{API}/milestones/{m['id']}", headers=owner.headers, json={"title": "X"})
            for m in ids
        ]
    else:
        updates = [
            client.post(
                f"{API}/milestones/{m['id']}/tasks/{m['tasks'][0]['id']}/complete",
                headers=owner.headers,
            )
            for m in ids
        ]
    deletes = [client.delete(f"{API}/milestones/{m['id']}", headers=owner.headers) for m in ids]
    results = await asyncio.gather(
        *(r for pair in zip(updates, deletes, strict=True) for r in pair)
    )
    _all_in(results, (200, 204, 404, 409))
    for m in ids:
        r = await client.get(f"{API}/milestones/{m['id']}", headers=owner.headers)
        assert r.status_code == 404


@pytest.mark.slow
async def test_level_delete_vs_awards_and_update(tmp_path: Path) -> None:
    """Owners reach a level while an admin deletes it (and another edits it): every
    recording succeeds, and every business ends on the level its points reach. On a
    database of its own: the ladder is global."""
    async with fresh_database_url(tmp_path, "ladder_race") as url:
        app = create_app(make_settings(url, tmp_path / "d", POINTS_TRANSACTION_DAILY_CAP=1000))
        async with LifespanManager(app), asgi_client(app) as c:
            admin = await _admin(c, app)
            ladder = (await c.get(f"{API}/admin/levels", headers=admin)).json()
            for level in ladder:
                if level["required_points"] > 0:
                    r = await c.delete(f"{API}/admin/levels/{level['id']}", headers=admin)
                    assert r.status_code == 204, r.text
            owners = [await _owner(c) for _ in range(3)]
            sales = next(
                i
                for i, cat in (await _categories(c, owners[0])).items()
                if cat["name"] == "Penjualan"
            )
            for round_ in range(1, PAIRS + 1):
                # The owners have 5 * (round - 1) points; one recording each reaches it.
                r = await c.post(
                    f"{API}/admin/levels",
                    headers=admin,
                    json={"name": f"L{round_}", "required_points": 5 * round_, "order": 2},
                )
                assert r.status_code == 201, r.text
                level = r.json()["id"]
                results = await asyncio.gather(
                    *(
                        c.post(
                            f"{API}/finance/transactions",
                            headers=o.headers,
                            json={"type": "income", "amount": 1000, "category_id": sales},
                        )
                        for o in owners
                    ),
                    c.patch(f"{API}/admin/levels/{level}", headers=admin, json={"icon": "x"}),
                    c.delete(f"{API}/admin/levels/{level}", headers=admin),
                )
                _all_in(results[:3], (201,))
                _all_in(results[3:4], (200, 404))
                _all_in(results[4:], (204,))
            base = next(lv for lv in ladder if lv["required_points"] == 0)["name"]
            for o in owners:
                stats = (await c.get(f"{API}/gamification/me", headers=o.headers)).json()
                assert stats["total_points"] == 5 * PAIRS
                assert stats["level"]["name"] == base


@pytest.mark.slow
async def test_unanticipated_races_are_409_not_500(tmp_path: Path) -> None:
    """The safety net: a route with a race no service handles (a row updated after a
    parallel delete, a foreign key broken by one) answers 409 with a JSON detail."""
    from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, event, insert
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from sqlalchemy.orm import registry

    from app.core.errors import install_exception_handlers

    metadata = MetaData()
    parent = Table("parent", metadata, Column("id", Integer, primary_key=True), Column("n", String))
    child = Table(
        "child",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("parent_id", Integer, ForeignKey("parent.id"), nullable=False),
    )

    class Parent:
        id: int
        n: str

    registry().map_imperatively(Parent, parent)
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'net.db'}")
    event.listen(
        engine.sync_engine, "connect", lambda c, _r: c.cursor().execute("PRAGMA foreign_keys=ON")
    )
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(insert(parent).values(id=1, n="a"))
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    bare = FastAPI()
    install_exception_handlers(bare)

    @bare.patch("/stale")
    async def stale() -> dict[str, str]:
        async with sessions() as reader, sessions() as deleter:
            row = await reader.get(Parent, 1)
            await reader.commit()
            await deleter.execute(parent.delete().where(parent.c.id == 1))
            await deleter.commit()
            row.n = "b"  # type: ignore[union-attr]
            await reader.commit()  # UPDATE ... matches no row
        return {}

    @bare.post("/orphan")
    async def orphan() -> dict[str, str]:
        async with sessions() as s:
            await s.execute(insert(child).values(id=1, parent_id=99))
            await s.commit()
        return {}

    try:
        async with asgi_client(bare) as c:
            for method, path in (("PATCH", "/stale"), ("POST", "/orphan")):
                r = await c.request(method, path)
                assert r.status_code == 409, r.text
                assert "changed or deleted by another request" in r.json()["detail"]
                assert "SQL" not in r.text
    finally:
        await engine.dispose()
