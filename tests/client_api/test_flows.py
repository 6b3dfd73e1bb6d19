"""The acceptance flows of WEB-CLIENT-CONTRACT.md (section 7), one test each: a user's
steps in the browser, replayed as the calls the client makes, in order, with its
`Origin`, its Bearer token and a cookie jar."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.client_api.conftest import (
    PASSWORD,
    PREFIX,
    WebServer,
    admin,
    onboarded,
    server_log_is_clean,
    signed_up,
)
from tests.client_api.test_contract import assert_error, generated_roadmap, is_emoji
from tests.client_api.webclient import Browser, WebClient, unique_email
from tests.fakes.llm_server import Reply

JAKARTA = ZoneInfo("Asia/Jakarta")


def local_midnight_utc(day: date) -> str:
    """`toISOString()` of local midnight of a day picked in the client, at UTC+7."""
    instant = datetime.combine(day, time.min, JAKARTA).astimezone(UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def income_category(client: WebClient) -> dict[str, Any]:
    r = await client.call("GET", "/finance/categories")
    assert r.status_code == 200, r.text
    return next(c for c in r.json() if c["type"] == "income" and c["is_default"])


async def record(client: WebClient, amount: Any, when: str, **extra: Any) -> Any:
    category = await income_category(client)
    return await client.call(
        "POST",
        "/finance/transactions",
        {
            "amount": amount,
            "type": "income",
            "category_id": category["id"],
            "category_name": category["name"],
            "payment_method": "BANK_TRANSFER",
            "description": "Pesanan nasi kotak",
            "transaction_date": when,
            **extra,
        },
    )


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def test_a_register(web_server: WebServer) -> None:
    async with web_server.tab() as tab:
        email = unique_email()
        r = await tab.register("Bu Dewi", email, PASSWORD)
        assert r.status_code == 201, r.text
        r = await tab.login(email, PASSWORD)
        assert r.status_code == 200 and r.json()["user"]["email"] == email
        cookie = r.headers["set-cookie"]
        assert "refresh_token=" in cookie and "HttpOnly" in cookie
        assert f"Path={PREFIX}/auth" in cookie
        r = await tab.call("GET", "/auth/me")
        assert r.status_code == 200 and r.json()["business"] is None  # -> /onboarding
        assert tab.token


async def test_b_onboarding_in_four_steps(web_server: WebServer) -> None:
    tab = await signed_up(web_server)
    r = await tab.onboard("Kedai Kopi Senja")
    assert r.status_code == 201, r.text
    r = await tab.call("GET", "/business/profile")
    profile = r.json()
    assert profile["address"]["state"] == "Jawa Barat"
    assert profile["address"]["zip_code"] == "40115"
    assert profile["address"]["country"] == "Indonesia"
    assert profile["business_stage"] == "Operational"
    milestones = await generated_roadmap(tab)
    assert len(milestones) == 4  # generated in the background, there at the next fetch
    r = await tab.call("GET", "/auth/me")
    assert r.json()["business"]["business_name"] == "Kedai Kopi Senja"  # -> /dashboard


async def test_c_dashboard(web_server: WebServer) -> None:
    tab = await onboarded(web_server)
    profile = (await tab.call("GET", "/business/profile")).json()
    milestones = await generated_roadmap(tab)
    assert profile["level_name"] == "Pemula" and is_emoji(profile["level_icon"])
    assert profile["total_points"] == 0
    current = next(
        (m for m in milestones if m["status"] == "in_progress"),
        next(m for m in milestones if m["status"] == "pending"),
    )
    assert current["id"] == milestones[0]["id"]


async def test_d_roadmap_start_and_task_completion(web_server: WebServer) -> None:
    tab = await onboarded(web_server)
    milestone = (await generated_roadmap(tab))[0]
    r = await tab.call("POST", f"/milestones/{milestone['id']}/start")
    assert r.status_code == 200 and r.json()["title"] == milestone["title"]
    refetched = await tab.call("GET", "/milestones/")
    assert refetched.json()[0]["status"] == "in_progress"

    before = (await tab.call("GET", "/business/profile")).json()["total_points"]
    celebrations = []
    for task in milestone["tasks"]:
        r = await tab.call("POST", f"/milestones/tasks/{task['id']}/complete")
        assert r.status_code == 200, r.text
        assert r.json()["title"] == task["title"] and r.json()["reward_points"] > 0
        celebrations.append(r.json().get("unlocked_achievement"))
        # The page refetches these three after each completion.
        for path in ("/milestones/", "/business/profile", "/gamification/achievements"):
            assert (await tab.call("GET", path)).status_code == 200
    # The last task completes the milestone and unlocks "Langkah Nyata" (🚩).
    assert celebrations[-1] is not None and celebrations[-1]["title"] == "Langkah Nyata"
    assert celebrations[-1]["badge_icon"] == "🚩"
    assert not any(celebrations[:-1])
    after = (await tab.call("GET", "/business/profile")).json()["total_points"]
    assert after > before
    done = (await tab.call("GET", f"/milestones/{milestone['id']}")).json()
    assert done["status"] == "completed" and all(t["is_completed"] for t in done["tasks"])
    achievements = (await tab.call("GET", "/gamification/achievements")).json()
    assert any(a["title"] == "Langkah Nyata" and a["is_unlocked"] for a in achievements)

    # A repeat answers the same task; another owner's task is not found.
    again = await tab.call("POST", f"/milestones/tasks/{milestone['tasks'][0]['id']}/complete")
    assert again.status_code == 200 and again.json()["is_completed"] is True
    assert again.json().get("unlocked_achievement") is None
    other = await onboarded(web_server)
    assert_error(
        await other.call("POST", f"/milestones/tasks/{milestone['tasks'][0]['id']}/complete"), 404
    )


async def test_e_record_a_transaction(web_server: WebServer) -> None:
    tab = await onboarded(web_server)
    r = await tab.call("GET", "/finance/categories")
    assert {c["type"] for c in r.json()} == {"income", "expense"}
    assert all(is_emoji(c["icon"]) for c in r.json())
    r = await record(tab, 150000, now_utc())
    assert r.status_code == 201, r.text
    unlocked = r.json()["unlocked_achievement"]
    assert unlocked["title"] == "Catatan Pertama" and unlocked["badge_icon"] == "✏️"
    for path in ("/finance/transactions", "/finance/summary", "/business/profile"):
        assert (await tab.call("GET", path)).status_code == 200
    assert (await tab.call("GET", "/business/profile")).json()["total_points"] == 5
    # A second one unlocks nothing new.
    r = await record(tab, 20000, now_utc())
    assert r.status_code == 201 and r.json()["unlocked_achievement"] is None

    body = assert_error(await record(tab, 1500.5, now_utc()), 422)
    assert body["message"].startswith("amount:")
    page = (await tab.call("GET", "/finance/transactions", params={"page": 1, "size": 20})).json()
    assert page["total"] == 2  # nothing saved from the refused one


async def test_f_list_summary_filter_and_delete(web_server: WebServer) -> None:
    tab = await onboarded(web_server)
    today = datetime.now(JAKARTA).date()
    # 00:30 and 23:30 local time of the same day, and one the day before.
    first = datetime.combine(today, time(0, 30), JAKARTA)
    late = datetime.combine(today, time(23, 30), JAKARTA) - timedelta(days=1)
    for amount, when in ((150000, first), (50000, late)):
        iso = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert (await record(tab, amount, iso)).status_code == 201

    page = (await tab.call("GET", "/finance/transactions", params={"page": 1, "size": 20})).json()
    assert page["total"] == 2 and page["pages"] == 1
    item = page["items"][0]
    assert item["description"] == "Pesanan nasi kotak" and item["payment_method"] == "BANK_TRANSFER"
    assert item["amount"] == 150000 and item["type"] == "income"

    r = await tab.call("GET", "/finance/summary", params={"period": "month"})
    summary = r.json()
    if late.month == first.month:
        assert summary["total_income"] == 200000
    assert summary["total_income"] >= 150000
    [share] = summary["income_breakdown"]
    assert share["percentage"] == 100
    for period in ("day", "week", "year"):
        assert (
            await tab.call("GET", "/finance/summary", params={"period": period})
        ).status_code == 200
    day = (await tab.call("GET", "/finance/summary", params={"period": "day"})).json()
    assert day["total_income"] == 150000

    # One day picked: start = end = its local midnight, and the whole day is covered.
    midnight = local_midnight_utc(today)
    r = await tab.call(
        "GET",
        "/finance/transactions",
        params={"page": 1, "size": 20, "start_date": midnight, "end_date": midnight},
    )
    assert [t["amount"] for t in r.json()["items"]] == [150000]
    r = await tab.call(
        "GET",
        "/finance/transactions",
        params={
            "page": 1,
            "size": 20,
            "start_date": local_midnight_utc(today - timedelta(days=1)),
            "end_date": midnight,
        },
    )
    assert r.json()["total"] == 2

    assert (await tab.call("DELETE", f"/finance/transactions/{item['id']}")).status_code == 204
    page = (await tab.call("GET", "/finance/transactions", params={"page": 1, "size": 20})).json()
    assert page["total"] == 1


async def test_g_leaderboard(web_server: WebServer) -> None:
    # Ten businesses with points (a transaction each): the caller, with none, is eleventh
    # at best.
    for n in range(10):
        other = await onboarded(web_server, f"Pesaing {n}")
        assert (await record(other, 10000, now_utc())).status_code == 201
    tab = await onboarded(web_server, "Warung Paling Baru")
    assert (await tab.call("GET", "/business/profile")).status_code == 200
    r = await tab.call("GET", "/gamification/leaderboard")
    assert r.status_code == 200, r.text
    rows = r.json()
    assert len(rows) == 11 and len({row["business_id"] for row in rows}) == 11
    assert all("user_id" not in row and row["user_name"] == "" for row in rows)
    assert [row["rank"] for row in rows[:10]] == list(range(1, 11))
    mine = rows[-1]
    assert mine["is_current_user"] and not any(row["is_current_user"] for row in rows[:10])
    assert mine["business_name"] == "Warung Paling Baru" and mine["total_points"] == 0
    assert mine["rank"] > 10  # its true place, after a gap
    r = await tab.call("GET", "/business/levels")
    assert r.status_code == 200 and all(is_emoji(lv["icon"]) for lv in r.json())


async def test_h_achievements(web_server: WebServer) -> None:
    tab = await onboarded(web_server)
    assert (await record(tab, 10000, now_utc())).status_code == 201
    achievements = (await tab.call("GET", "/gamification/achievements")).json()
    unlocked = [a for a in achievements if a["is_unlocked"]]
    assert [a["title"] for a in unlocked] == ["Catatan Pertama"] and unlocked[0]["unlocked_at"]
    assert all(a["required_points"] is not None for a in achievements)
    boss = await admin(web_server)
    r = await boss.call("GET", "/gamification/achievements")
    assert r.status_code == 200 and not any(a["is_unlocked"] for a in r.json())


async def test_i_chat_then_history_after_a_reload(web_server: WebServer) -> None:
    tab = await signed_up(web_server)
    assert (await tab.call("GET", "/chat/sessions")).json() == []
    web_server.llm.script(
        Reply.of_text("Halo, Bu Dewi! Mari kita mulai.", chunk_size=5, match="omzet naik")
    )

    async def history_during_the_stream() -> int:
        # The client asks for the session's messages as soon as it is created.
        while not (await tab.call("GET", "/chat/sessions")).json():
            await asyncio.sleep(0.05)
        session_id = (await tab.call("GET", "/chat/sessions")).json()[0]["id"]
        return (await tab.call("GET", f"/chat/sessions/{session_id}")).status_code

    reading, during = await asyncio.gather(
        tab.chat("Bagaimana supaya omzet naik?"), history_during_the_stream()
    )
    assert during == 200
    [created] = reading.of_type("session_created")
    session_id = created["data"]
    assert reading.text == "Halo, Bu Dewi! Mari kita mulai."
    sidebar = (await tab.call("GET", "/chat/sessions")).json()
    assert sidebar[0] == {**sidebar[0], "id": session_id, "title": created["message"]}

    # Reload: the sidebar and the conversation come from the server.
    async with web_server.tab(tab.browser) as reloaded:
        reloaded.token = tab.token
        assert session_id in [
            s["id"] for s in (await reloaded.call("GET", "/chat/sessions")).json()
        ]
        history = (await reloaded.call("GET", f"/chat/sessions/{session_id}")).json()
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", "Bagaimana supaya omzet naik?"),
        ("assistant", "Halo, Bu Dewi! Mari kita mulai."),
    ]

    second = await tab.chat("Terima kasih", session_id=session_id)
    assert second.status == 200 and not second.of_type("session_created") and second.text
    assert len((await tab.call("GET", "/chat/sessions")).json()) == 1
    assert len((await tab.call("GET", f"/chat/sessions/{session_id}")).json()) == 4

    stranger = await signed_up(web_server)
    refused = await stranger.chat("Halo", session_id=session_id)
    # A JSON error: no frame with a `type`, so the bubble shows the failure text.
    assert refused.status == 404 and "message" in refused.body
    assert not any("type" in frame for frame in refused.frames)
    server_log_is_clean(web_server)


async def test_j_renewal_through_the_cookie(web_server: WebServer) -> None:
    tab = await signed_up(web_server)
    assert tab.token
    corrupted = tab.token = tab.token[:-4] + "AAAA"  # edited in localStorage, then a reload
    r = await tab.renewing("GET", "/auth/me")
    assert r.status_code == 200 and r.json()["name"] == "Bu Dewi"  # still on the page
    assert tab.token and tab.token != corrupted


async def test_k_logout_revokes(web_server: WebServer) -> None:
    tab = await signed_up(web_server)
    cookie_before = tab.browser.cookies["refresh_token"]
    r = await tab.logout()
    assert r.status_code == 204
    assert "refresh_token" not in tab.browser.cookies and tab.token is None
    # The cookie, had it survived (a copy, another device), is revoked as well.
    stolen = Browser(cookie_before)
    async with web_server.tab(stolen) as copy:
        assert_error(await copy.call("POST", "/auth/refresh"), 401)
    assert_error(await tab.call("POST", "/auth/refresh"), 401)


async def test_l_the_login_page(web_server: WebServer) -> None:
    email = unique_email()
    first = await web_server.tab().register("Bu Dewi", email, PASSWORD)
    assert first.status_code == 201
    async with web_server.tab() as tab:
        r = await tab.login(email, PASSWORD)
        assert r.status_code == 200 and r.json()["user"]["role"] == "user"
        assert (await tab.onboard()).status_code == 201
        r = await tab.call("GET", "/auth/me")
        assert r.status_code == 200 and r.json()["business"]  # -> /dashboard, not /onboarding

        # A local logout that never reached the server leaves a valid cookie behind; a
        # wrong password next must not sign the browser in as that previous owner.
        tab.token = None
        r = await tab.renewing(
            "POST", "/auth/login", {"email": unique_email(), "password": "salah-salah"}
        )
        assert_error(r, 400)
        assert tab.token is None  # no renewal ran: a 400 is not a 401
        r = await tab.renewing("POST", "/auth/login", {"email": email, "password": "salah-salah"})
        assert_error(r, 400)
        assert tab.token is None


async def test_m_admin(web_server: WebServer) -> None:
    boss = await admin(web_server)
    r = await boss.call("GET", "/admin/business/levels")
    base = min(r.json(), key=lambda lv: lv["required_points"])
    r = await boss.call(
        "POST", "/admin/business/levels", {"name": "Berlian", "required_points": 5000, "icon": "💎"}
    )
    assert r.status_code == 201, r.text
    level = r.json()
    ladder = sorted(
        (await boss.call("GET", "/admin/business/levels")).json(), key=lambda lv: lv["order"]
    )
    assert [lv["required_points"] for lv in ladder] == sorted(
        lv["required_points"] for lv in ladder
    )
    assert ladder[-1]["name"] == "Berlian"
    r = await boss.call(
        "PUT",
        f"/admin/business/levels/{level['id']}",
        {"name": "Berlian", "required_points": 50, "icon": "💎"},
    )
    assert r.status_code == 200, r.text
    ladder = sorted(
        (await boss.call("GET", "/admin/business/levels")).json(), key=lambda lv: lv["order"]
    )
    assert [lv["name"] for lv in ladder][:2] == [base["name"], "Berlian"]
    assert [lv["required_points"] for lv in ladder] == sorted(
        lv["required_points"] for lv in ladder
    )
    assert (await boss.call("DELETE", f"/admin/business/levels/{level['id']}")).status_code == 204
    assert_error(await boss.call("DELETE", f"/admin/business/levels/{base['id']}"), 409)

    form = {
        "title": "Pelanggan Setia",
        "description": "a\nb",
        "required_points": "500",
        "badge_icon": "🎯",
    }
    r = await boss.call("POST", "/admin/gamification/achievements", form)
    assert r.status_code == 201, r.text
    achievement = r.json()
    r = await boss.call(
        "PUT", f"/admin/gamification/achievements/{achievement['id']}", {**form, "title": "Setia"}
    )
    assert r.status_code == 200 and r.json()["title"] == "Setia"
    r = await boss.call("DELETE", f"/admin/gamification/achievements/{achievement['id']}")
    assert r.status_code == 204

    owner = await signed_up(web_server)
    for method, path, body in (
        ("GET", "/admin/business/levels", None),
        ("POST", "/admin/business/levels", {"name": "X", "required_points": 1, "icon": "x"}),
        (
            "PUT",
            f"/admin/business/levels/{base['id']}",
            {"name": "X", "required_points": 0, "icon": "x"},
        ),
        ("DELETE", f"/admin/business/levels/{base['id']}", None),
        ("POST", "/admin/gamification/achievements", form),
        ("PUT", f"/admin/gamification/achievements/{achievement['id']}", form),
        ("DELETE", f"/admin/gamification/achievements/{achievement['id']}", None),
    ):
        assert_error(await owner.call(method, path, body), 403)
