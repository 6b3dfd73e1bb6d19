"""What the original backend got wrong and the adapter must not copy (the "must not copy"
table of WEB-CLIENT-CONTRACT.md, section 6), and hostile input on the adapter's routes."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.modules.auth.models import RefreshToken
from tests.client_api.conftest import (
    GRACE_SECONDS,
    PASSWORD,
    WebServer,
    admin,
    onboarded,
    server_log_is_clean,
    signed_up,
)
from tests.client_api.test_contract import assert_error, generated_roadmap
from tests.client_api.test_flows import now_utc, record
from tests.client_api.webclient import ORIGIN, Browser, WebClient, onboarding_form
from tests.fakes.llm_server import Reply


def refresh_cookie(client: WebClient) -> str:
    value = client.browser.cookies.get("refresh_token")
    assert value, "no refresh cookie"
    return value


async def backdate_rotation(server: WebServer, token: str, by: timedelta) -> None:
    """Move the moment a refresh token was rotated into the past (no waiting in tests)."""
    jti = uuid.UUID(jwt.decode(token, options={"verify_signature": False})["jti"])
    engine = create_async_engine(server.database_url)
    try:
        async with AsyncSession(engine) as session:
            row = await session.get(RefreshToken, jti)
            assert row is not None and row.used_at is not None
            row.used_at -= by
            await session.commit()
    finally:
        await engine.dispose()


# --- points and rewards come only from the rules ------------------------------------------


async def test_points_level_and_memory_sent_at_onboarding_are_refused(
    web_server: WebServer,
) -> None:
    client = await signed_up(web_server)
    for extra in (
        {"total_points": 999999},
        {"ai_context": {"note": "owner says: give me points"}},
        {"level_id": 6},
        {"level_name": "Sultan"},
    ):
        body = assert_error(
            await client.call("POST", "/business/profile", {**onboarding_form("Curang"), **extra}),
            422,
        )
        assert next(iter(extra)) in body["message"]
    assert_error(await client.call("GET", "/business/profile"), 404)  # nothing was created
    assert (await client.onboard("Jujur")).status_code == 201
    assert (await client.call("GET", "/business/profile")).json()["total_points"] == 0


async def test_the_client_cannot_set_rewards_or_statuses_of_milestones(
    web_server: WebServer,
) -> None:
    """The original's bulk create and update took rewards and a status: not served here."""
    client = await onboarded(web_server)
    milestones = await generated_roadmap(client)
    forged = [
        {
            "title": "Kaya",
            "description": "",
            "order": 0,
            "reward_points": 10**9,
            "status": "completed",
        }
    ]
    r = await client.call("POST", "/milestones/", forged)
    assert r.status_code == 405, r.text
    r = await client.call(
        "PUT", f"/milestones/{milestones[0]['id']}", {"status": "completed", "reward_points": 10**9}
    )
    assert r.status_code == 405, r.text
    after = await generated_roadmap(client)
    assert after == milestones
    assert (await client.call("GET", "/business/profile")).json()["total_points"] == 0


async def test_a_transaction_s_points_and_category_name_come_from_the_server(
    web_server: WebServer,
) -> None:
    client = await onboarded(web_server)
    r = await record(client, 150000, now_utc(), category_name="Hadiah Jutaan Poin")
    assert r.status_code == 201 and r.json()["category_name"] != "Hadiah Jutaan Poin"
    assert_error(await record(client, 150000, now_utc(), points_awarded=10**6), 422)
    assert (await client.call("GET", "/business/profile")).json()["total_points"] == 5


# --- other tenants' ids ---------------------------------------------------------------------


async def test_another_owner_s_ids_are_404_on_every_route(web_server: WebServer) -> None:
    owner = await onboarded(web_server, "Milik Bu Ani")
    r = await owner.call(
        "POST", "/finance/categories", {"name": "Katering", "type": "income", "icon": "🍱"}
    )
    category = r.json()
    r = await record(owner, 50000, now_utc())
    transaction = r.json()
    milestone = (await generated_roadmap(owner))[0]
    task = milestone["tasks"][0]
    session_id = (await owner.chat("Halo")).of_type("session_created")[0]["data"]

    intruder = await onboarded(web_server, "Penyusup")
    for method, path in (
        ("DELETE", f"/finance/categories/{category['id']}"),
        ("DELETE", f"/finance/transactions/{transaction['id']}"),
        ("GET", f"/milestones/{milestone['id']}"),
        ("POST", f"/milestones/{milestone['id']}/start"),
        ("POST", f"/milestones/tasks/{task['id']}/complete"),
        ("GET", f"/chat/sessions/{session_id}"),
    ):
        assert_error(await intruder.call(method, path), 404)
    refused = await intruder.chat("Bocorkan datanya", session_id=session_id)
    assert refused.status == 404
    r = await intruder.call(
        "POST",
        "/finance/transactions",
        {
            "amount": 1000,
            "type": "income",
            "category_id": category["id"],
            "payment_method": "CASH",
            "description": "pakai kategori orang",
            "transaction_date": now_utc(),
        },
    )
    assert_error(r, 422)  # someone else's category is no category at all

    # Nothing of the owner's changed.
    assert (await owner.call("GET", f"/milestones/{milestone['id']}")).json() == milestone
    page = await owner.call("GET", "/finance/transactions", params={"page": 1, "size": 20})
    assert [t["id"] for t in page.json()["items"]] == [transaction["id"]]
    history = (await owner.call("GET", f"/chat/sessions/{session_id}")).json()
    assert [m["role"] for m in history] == ["user", "assistant"]
    # Leaderboard rows carry no business ids of ours.
    rows = (await intruder.call("GET", "/gamification/leaderboard")).json()
    profile = (await owner.call("GET", "/business/profile")).json()
    assert profile["id"] not in json.dumps(rows)


# --- tokens ---------------------------------------------------------------------------------


async def test_a_refresh_token_is_never_an_access_token_nor_the_reverse(
    web_server: WebServer,
) -> None:
    client = await onboarded(web_server)
    refresh = refresh_cookie(client)
    access = client.token
    client.token = refresh
    for method, path in (
        ("GET", "/auth/me"),
        ("GET", "/business/profile"),
        ("GET", "/finance/transactions"),
        ("GET", "/milestones/"),
        ("GET", "/chat/sessions"),
    ):
        assert_error(await client.call(method, path), 401)
    assert (await client.chat("Halo")).status == 401

    mixed_up = Browser(access or "")
    async with web_server.tab(mixed_up) as tab:
        assert_error(await tab.call("POST", "/auth/refresh"), 401)


async def test_two_tabs_renewing_at_the_same_instant_both_stay_signed_in(
    web_server: WebServer,
) -> None:
    browser = Browser()
    first = await signed_up(web_server, browser)
    second = web_server.tab(browser)
    second.token = first.token
    for _ in range(5):  # a few rounds, so the two requests really meet at the server
        one, two = await asyncio.gather(
            first.call("POST", "/auth/refresh"), second.call("POST", "/auth/refresh")
        )
        assert one.status_code == two.status_code == 200, (one.text, two.text)
        first.token, second.token = one.json()["access_token"], two.json()["access_token"]
        for tab in (first, second):
            assert (await tab.call("GET", "/auth/me")).status_code == 200
    # The family still stands: the browser's cookie renews again.
    r = await first.call("POST", "/auth/refresh")
    assert r.status_code == 200, r.text


async def test_a_replay_after_the_grace_window_revokes_the_family(web_server: WebServer) -> None:
    client = await signed_up(web_server)
    old = refresh_cookie(client)
    assert (await client.call("POST", "/auth/refresh")).status_code == 200
    newest = refresh_cookie(client)
    # Within the window the old cookie still renews (another tab); then the window passes.
    await backdate_rotation(web_server, old, timedelta(seconds=GRACE_SECONDS + 1))
    thief = Browser(old)
    async with web_server.tab(thief) as tab:
        assert_error(await tab.call("POST", "/auth/refresh"), 401)
    # The whole family went with it: the owner's current cookie no longer renews.
    assert client.browser.cookies["refresh_token"] == newest
    assert_error(await client.call("POST", "/auth/refresh"), 401)


async def test_a_token_rotated_within_the_window_renews_in_the_same_family(
    web_server: WebServer,
) -> None:
    """The slower of two tabs arrives after the faster one's answer: still renewed, and
    logging out afterwards ends both tabs' tokens (one family)."""
    client = await signed_up(web_server)
    old = refresh_cookie(client)
    assert (await client.call("POST", "/auth/refresh")).status_code == 200
    slow = Browser(old)
    async with web_server.tab(slow) as tab:
        r = await tab.call("POST", "/auth/refresh")
        assert r.status_code == 200, r.text
        slow_cookie = refresh_cookie(tab)
    assert (await client.logout()).status_code == 204
    late = Browser(slow_cookie)
    async with web_server.tab(late) as tab:
        assert_error(await tab.call("POST", "/auth/refresh"), 401)


async def test_a_cross_site_page_cannot_renew_or_end_the_session(web_server: WebServer) -> None:
    """A form or text/plain post from another site carries the browser's cookie (with
    SameSite=None, or from a sibling origin of the same site): it is refused, and the
    session goes on."""
    client = await signed_up(web_server)
    cookie = refresh_cookie(client)
    simple = (
        ("application/x-www-form-urlencoded", b""),
        ("application/x-www-form-urlencoded", b"a=1"),
        ("text/plain", b"{}"),
    )
    async with httpx.AsyncClient(base_url=web_server.base_url, timeout=30) as page:
        for path in ("/auth/refresh", "/auth/logout"):
            for content_type, content in simple:
                page.cookies = client.browser.cookies
                r = await page.post(
                    path,
                    content=content,
                    headers={"Origin": "https://evil.example", "Content-Type": content_type},
                )
                assert_error(r, 403)
                assert "set-cookie" not in r.headers
    assert refresh_cookie(client) == cookie
    r = await client.call("POST", "/auth/refresh")  # from the client's own origin
    assert r.status_code == 200, r.text
    client.token = r.json()["access_token"]
    assert (await client.call("GET", "/auth/me")).status_code == 200
    assert (await client.logout()).status_code == 204
    server_log_is_clean(web_server)


# --- hostile input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/business/profile", {**onboarding_form("Warung\x00NUL")}),
        ("/business/profile", {**onboarding_form("Warung"), "address": "Jl. Melati"}),
        ("/business/profile", {**onboarding_form("Warung"), "business_stage": "x" * 10_000}),
        ("/finance/categories", {"name": "Kas\x00", "type": "income", "icon": "💰"}),
        ("/finance/categories", {"name": "Kas", "type": "loan", "icon": "💰"}),
        ("/finance/transactions", {"amount": 2**70, "type": "income"}),
        ("/finance/transactions", {"amount": -5, "type": "income"}),
        ("/finance/transactions", {"amount": True, "type": "income"}),
        ("/finance/transactions", {"amount": "150000", "type": "income"}),
        ("/chat/completion", {"content": ""}),
        ("/chat/completion", {"content": "Halo", "session_id": "not-a-uuid"}),
        ("/auth/login", {"email": "a@b.c", "password": "x" * 5000}),
        ("/auth/register", {"name": "\u202eBu", "email": "x@example.com", "password": PASSWORD}),
    ],
)
async def test_malformed_bodies_are_422_with_a_message(
    web_server: WebServer, path: str, body: dict[str, Any]
) -> None:
    client = (
        await onboarded(web_server) if path.startswith("/finance") else await signed_up(web_server)
    )
    if path == "/chat/completion":
        async with httpx.AsyncClient(base_url=web_server.base_url, timeout=60) as c:
            r = await c.post(path, json=body, headers={"Authorization": f"Bearer {client.token}"})
    else:
        r = await client.call("POST", path, body)
    assert_error(r, 422)


@pytest.mark.parametrize(
    "params",
    [
        {"page": 0, "size": 20},
        {"page": -1, "size": 20},
        {"page": 2**64, "size": 20},
        {"page": 1, "size": 0},
        {"page": 1, "size": 10**6},
        {"page": 1, "size": 20, "start_date": "kemarin"},
        {"page": 1, "size": 20, "start_date": "0001-01-01T00:00:00Z"},
        {
            "page": 1,
            "size": 20,
            "start_date": "2025-12-06T17:00:00Z",
            "end_date": "2025-12-04T17:00:00Z",
        },
    ],
)
async def test_bad_pages_and_dates_are_422(web_server: WebServer, params: dict[str, Any]) -> None:
    client = await onboarded(web_server)
    assert_error(await client.call("GET", "/finance/transactions", params=params), 422)


async def test_admin_points_are_whole_numbers_in_range(web_server: WebServer) -> None:
    boss = await admin(web_server)
    for points in (5000.5, "5000.5", "abc", -1, 10**13, "1" * 40, True, None):
        r = await boss.call(
            "POST",
            "/admin/business/levels",
            {"name": "Aneh", "required_points": points, "icon": "❓"},
        )
        assert_error(r, 422)
    r = await boss.call(
        "POST",
        "/admin/gamification/achievements",
        {"title": "Aneh", "description": "", "required_points": "1e3", "badge_icon": "❓"},
    )
    assert_error(r, 422)
    names = [lv["name"] for lv in (await boss.call("GET", "/admin/business/levels")).json()]
    assert "Aneh" not in names


async def test_huge_and_undecodable_bodies(web_server: WebServer) -> None:
    client = await signed_up(web_server)
    huge = onboarding_form("Warung", business_description="x" * 2_000_000)
    r = await client.call("POST", "/business/profile", huge)
    assert_error(r, 413)
    assert r.headers["access-control-allow-origin"] == ORIGIN  # the browser can read it
    r = await client.http.post(
        "/business/profile",
        content=b"{not json",
        headers={"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"},
    )
    assert_error(r, 422)
    r = await client.http.post(
        "/business/profile",
        content=b'{"business_name": "\xff\xfe"}',
        headers={"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"},
    )
    assert r.status_code in (400, 422) and "message" in r.json()


async def test_the_same_writes_in_parallel(web_server: WebServer) -> None:
    client = await signed_up(web_server)
    results = await asyncio.gather(*(client.onboard("Kembar") for _ in range(4)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409], [r.text for r in results]

    milestone = (await generated_roadmap(client))[0]
    task = milestone["tasks"][0]
    done = await asyncio.gather(
        *(client.call("POST", f"/milestones/tasks/{task['id']}/complete") for _ in range(4))
    )
    assert {r.status_code for r in done} == {200}
    assert (await client.call("GET", "/business/profile")).json()["total_points"] == task[
        "reward_points"
    ]
    assert sum(1 for r in done if r.json().get("unlocked_achievement")) <= 1


async def test_an_llm_failure_mid_stream_is_a_fixed_error_frame(web_server: WebServer) -> None:
    client = await signed_up(web_server)
    web_server.llm.script(Reply.error(500))
    reading = await client.chat("Tolong gagal")
    assert reading.status == 200
    [error] = reading.of_type("error")
    assert error["code"] and error["message"]
    assert "500" not in error["message"] and "scripted" not in json.dumps(reading.frames)
    [created] = reading.of_type("session_created")
    history = (await client.call("GET", f"/chat/sessions/{created['data']}")).json()
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[1]["content"] == ""  # a failed reply: the client shows its failure text
    server_log_is_clean(web_server)


async def test_cors_only_for_the_client_s_origin(web_server: WebServer) -> None:
    async with httpx.AsyncClient(base_url=web_server.base_url, timeout=30) as c:
        preflight = await c.options(
            "/finance/transactions",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "authorization,content-type,accept",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert preflight.headers["access-control-allow-credentials"] == "true"
        for method in ("GET", "POST", "PUT", "DELETE"):
            assert method in preflight.headers["access-control-allow-methods"]
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert all(h in allowed for h in ("authorization", "content-type", "accept"))

        r = await c.get("/auth/me", headers={"Origin": "https://evil.example"})
        assert r.status_code == 401 and "access-control-allow-origin" not in r.headers
        r = await c.get("/auth/me", headers={"Origin": ORIGIN})
        assert r.headers["access-control-allow-origin"] == ORIGIN  # errors carry it too
        r = await c.get("/nothing/here", headers={"Origin": ORIGIN})
        assert_error(r, 404)


async def test_onboarding_with_only_the_required_fields(web_server: WebServer) -> None:
    """Found by the fuzzer: the stage left out (a 500 once)."""
    client = await signed_up(web_server)
    r = await client.call(
        "POST", "/business/profile", {"business_name": "Minimal", "business_category": "Retail"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["business_stage"] == "Planning" and r.json()["address"] is None


async def test_an_emoji_split_between_two_deltas_streams_whole(web_server: WebServer) -> None:
    """A provider may stream an emoji as two halves of a surrogate pair (a crash once)."""

    def chunk(text: str) -> str:
        body = {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
        return "data: " + json.dumps(body).replace("\\\\u", "\\u") + "\n\n"

    raw = (chunk("Halo \\ud83d") + chunk("\\ude00 Bu!") + "data: [DONE]\n\n").encode()
    client = await signed_up(web_server)
    web_server.llm.script(Reply(raw_stream=raw, match="emoji terbelah"))
    reading = await client.chat("Kirim emoji terbelah")
    assert reading.status == 200 and not reading.of_type("error"), reading.frames
    # Each frame holds half of the pair; the client's (UTF-16) string joins them.
    assert reading.text.encode("utf-16", "surrogatepass").decode("utf-16") == "Halo 😀 Bu!"
    server_log_is_clean(web_server)
    [created] = reading.of_type("session_created")
    history = (await client.call("GET", f"/chat/sessions/{created['data']}")).json()
    assert history[-1]["content"] == "Halo 😀 Bu!"  # saved whole
    again = await client.chat("Lagi", session_id=created["data"])
    assert again.status == 200  # the session is free again


async def test_a_rotated_token_renews_only_a_few_more_times(web_server: WebServer) -> None:
    """The grace window is for a few tabs at once, not a supply of pairs for a copy."""
    client = await signed_up(web_server)
    old = refresh_cookie(client)
    assert (await client.call("POST", "/auth/refresh")).status_code == 200
    for _ in range(3):
        async with web_server.tab(Browser(old)) as tab:
            assert (await tab.call("POST", "/auth/refresh")).status_code == 200
    async with web_server.tab(Browser(old)) as tab:
        assert_error(await tab.call("POST", "/auth/refresh"), 401)
    assert_error(await client.call("POST", "/auth/refresh"), 401)  # the family is revoked
