"""Each of the web client's 31 calls, replayed as the client sends it against a real
server, with every field the client reads checked for its type (WEB-CLIENT-CONTRACT.md,
section 3). The numbers in the test names are the contract's."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.client_api.conftest import (
    ADMIN_EMAIL,
    PASSWORD,
    PREFIX,
    WebServer,
    admin,
    onboarded,
    server_log_is_clean,
    signed_up,
)
from tests.client_api.webclient import (
    ORIGIN,
    WebClient,
    assert_reads,
    is_bool,
    is_dt,
    is_int,
    is_num,
    is_str,
    is_uuid,
    optional,
    unique_email,
)

USER = {"id": is_uuid, "email": is_str, "name": is_str, "role": is_str, "created_at": is_dt}
BUSINESS = {
    "id": is_uuid,
    "business_name": is_str,
    "business_category": is_str,
    "business_description": is_str,
    "business_stage": is_str,
    "target_market": is_str,
    "primary_goal": is_str,
    "total_points": is_int,
    "level_name": is_str,
    "level_icon": is_str,
    "created_at": is_dt,
    "updated_at": is_dt,
}
ADDRESS = {"street": is_str, "city": is_str, "state": is_str, "zip_code": is_str, "country": is_str}
LEVEL = {"id": is_int, "name": is_str, "required_points": is_int, "icon": is_str}
ACHIEVEMENT = {
    "id": is_int,
    "title": is_str,
    "description": is_str,
    "required_points": is_int,
    "badge_icon": is_str,
    "is_unlocked": is_bool,
    "unlocked_at": optional(is_dt),
}
UNLOCKED = {"title": is_str, "description": is_str, "required_points": is_int, "badge_icon": is_str}
TRANSACTION = {
    "id": is_uuid,
    "type": is_str,
    "amount": is_num,
    "category_name": is_str,
    "description": is_str,
    "payment_method": is_str,
    "transaction_date": is_dt,
}
TASK = {
    "id": is_uuid,
    "title": is_str,
    "order": is_int,
    "is_completed": is_bool,
    "reward_points": is_int,
    "milestone_id": is_uuid,
    "completed_at": optional(is_dt),
}
MILESTONE = {
    "id": is_uuid,
    "title": is_str,
    "description": is_str,
    "status": is_str,
    "level": is_int,
    "reward_points": is_int,
    "started_at": optional(is_dt),
    "completed_at": optional(is_dt),
    "order": is_int,
    "is_generated": is_bool,
    "created_at": is_dt,
    "updated_at": is_dt,
}
EMOJI_OR_SYMBOL = "🌱🌿🍃🌳🏪👑✏️📖🚩⭐🌟🏆💰🛒🛍️🛠️💵📦👥🏠💡🚚📣🔧🧾"


def assert_error(r: Any, status: int) -> dict[str, Any]:
    """A JSON error with our `detail` and a one-line `message` for the client's toast."""
    assert r.status_code == status, r.text
    body = r.json()
    assert "detail" in body and isinstance(body["message"], str) and body["message"]
    assert "\n" not in body["message"] and len(body["message"]) <= 200
    return body


def assert_cors(r: Any) -> None:
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"


def is_emoji(value: Any) -> bool:
    return isinstance(value, str) and value != "" and not value.isascii()


async def generated_roadmap(client: WebClient, size: int = 4) -> list[dict[str, Any]]:
    """`GET /milestones/` until the first roadmap (generated in the background) is in."""
    deadline = time.monotonic() + 90
    while True:
        r = await client.call("GET", "/milestones/")
        assert r.status_code == 200, r.text
        if len(r.json()) >= size or time.monotonic() > deadline:
            return r.json()
        await asyncio.sleep(0.3)


# --- auth ---------------------------------------------------------------------------------


async def test_1_register(web_server: WebServer, tab: WebClient) -> None:
    r = await tab.register("Bu Dewi", unique_email(), PASSWORD)
    assert r.status_code == 201, r.text
    assert_reads(r.json(), {"id": is_uuid, "email": is_str, "name": is_str, "created_at": is_dt})
    assert_cors(r)


async def test_2_login_answers_the_user_and_sets_the_cookie(
    web_server: WebServer, tab: WebClient
) -> None:
    email = unique_email()
    assert (await tab.register("Bu Dewi", email, PASSWORD)).status_code == 201
    r = await tab.login(email, PASSWORD)
    assert r.status_code == 200, r.text
    body = r.json()
    assert_reads(body, {"access_token": is_str})
    assert body["token_type"] == "bearer" and "refresh_token" not in body
    assert_reads(body["user"], USER)
    assert body["user"]["role"] == "user" and body["user"]["business"] is None
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("refresh_token=") and "HttpOnly" in cookie
    assert f"Path={PREFIX}/auth" in cookie and "SameSite=lax" in cookie
    assert "Max-Age=604800" in cookie and "Secure" not in cookie  # development over http
    assert r.headers["cache-control"] == "no-store"
    assert_cors(r)

    assert (await tab.onboard()).status_code == 201
    r = await web_server.tab().login(email, PASSWORD)
    assert_reads(r.json()["user"]["business"], BUSINESS)


async def test_3_refresh_takes_the_cookie_and_no_body(web_server: WebServer) -> None:
    client = await signed_up(web_server)
    stale = client.token
    old_cookie = client.browser.cookies["refresh_token"]
    r = await client.call("POST", "/auth/refresh")  # the stale Bearer goes along; no body
    assert r.status_code == 200, r.text
    assert_reads(r.json(), {"access_token": is_str})
    assert "refresh_token" not in r.json() and r.json()["access_token"] != stale
    assert client.browser.cookies["refresh_token"] != old_cookie  # rotated
    assert f"Path={PREFIX}/auth" in r.headers["set-cookie"]
    assert_cors(r)

    bare = web_server.tab()
    assert_error(await bare.call("POST", "/auth/refresh"), 401)


async def test_4_logout_revokes_and_deletes_the_cookie(web_server: WebServer) -> None:
    client = await signed_up(web_server)
    client.token = None  # no valid Bearer is needed
    r = await client.call("POST", "/auth/logout", {})
    assert r.status_code == 204, r.text
    cookie = r.headers["set-cookie"]
    assert cookie.startswith('refresh_token=""') and f"Path={PREFIX}/auth" in cookie
    assert "Max-Age=0" in cookie
    assert "refresh_token" not in client.browser.cookies
    assert_cors(r)


async def test_5_me_is_200_with_or_without_a_business_and_for_admins(
    web_server: WebServer,
) -> None:
    client = await signed_up(web_server)
    r = await client.call("GET", "/auth/me")
    assert r.status_code == 200 and r.json()["business"] is None
    assert_reads(r.json(), USER)
    assert (await client.onboard()).status_code == 201
    r = await client.call("GET", "/auth/me")
    assert_reads(r.json()["business"], BUSINESS)

    boss = await admin(web_server)
    r = await boss.call("GET", "/auth/me")
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "admin" and r.json()["email"] == ADMIN_EMAIL
    assert r.json()["business"] is None


# --- business and levels -------------------------------------------------------------------


async def test_6_profile_is_404_before_onboarding_then_the_full_shape(
    web_server: WebServer,
) -> None:
    client = await signed_up(web_server)
    assert_error(await client.call("GET", "/business/profile"), 404)
    assert (await client.onboard("Kopi Senja")).status_code == 201
    r = await client.call("GET", "/business/profile")
    assert r.status_code == 200, r.text
    profile = r.json()
    assert_reads(profile, BUSINESS)
    assert_reads(profile["address"], ADDRESS)
    assert profile["business_name"] == "Kopi Senja"
    assert profile["business_stage"] == "Operational"  # the label chosen, kept
    assert profile["address"] == {
        "street": "Jl. Melati No. 5",
        "city": "Bandung",
        "state": "Jawa Barat",
        "zip_code": "40115",
        "country": "Indonesia",
    }
    assert profile["level_name"] == "Pemula" and is_emoji(profile["level_icon"])
    assert profile["total_points"] == 0
    assert "user_id" not in profile and "ai_context" not in profile


async def test_7_onboarding_answers_201_and_refuses_a_second_profile(
    web_server: WebServer,
) -> None:
    client = await signed_up(web_server)
    r = await client.onboard("Bakso Pak Kumis", business_stage="planning")
    assert r.status_code == 201, r.text
    assert_reads(r.json(), BUSINESS)
    assert r.json()["business_stage"] == "Planning"
    assert_cors(r)
    assert_error(await client.onboard("Bakso Kedua"), 409)
    # The form's length limits are the service's: too long is a 422 the toast can show.
    other = await signed_up(web_server)
    body = assert_error(await other.onboard("x" * 121), 422)
    assert body["message"].startswith("business_name:")
    assert_error(await other.onboard("Warung", business_stage="Booming"), 422)
    assert (await other.call("GET", "/business/profile")).status_code == 404  # nothing saved


async def test_8_and_9_levels_for_owners_and_admins(web_server: WebServer) -> None:
    client = await signed_up(web_server)
    r = await client.call("GET", "/business/levels")
    assert r.status_code == 200, r.text
    levels = r.json()
    assert len(levels) >= 6
    for level in levels:
        assert_reads(level, LEVEL)
        assert is_emoji(level["icon"])
    seeded = {lv["name"]: lv["icon"] for lv in levels}
    assert seeded["Pemula"] == "🌱" and seeded["Sultan"] == "👑"

    r = await (await admin(web_server)).call("GET", "/admin/business/levels")
    assert r.status_code == 200 and [lv["id"] for lv in r.json()] == [lv["id"] for lv in levels]
    assert_error(await client.call("GET", "/admin/business/levels"), 403)


async def test_10_to_12_admin_edits_the_ladder_without_orders(web_server: WebServer) -> None:
    boss = await admin(web_server)
    r = await boss.call(
        "POST", "/admin/business/levels", {"name": "Kontrak", "required_points": 200, "icon": "🎯"}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert_reads(created, LEVEL)
    ladder = (await boss.call("GET", "/admin/business/levels")).json()
    points = [lv["required_points"] for lv in sorted(ladder, key=lambda lv: lv["order"])]
    assert points == sorted(points) and 200 in points  # the order follows the threshold
    r = await boss.call(
        "PUT",
        f"/admin/business/levels/{created['id']}",
        {"name": "Kontrak Besar", "required_points": 2000, "icon": "🎯"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Kontrak Besar" and r.json()["required_points"] == 2000
    ladder = (await boss.call("GET", "/admin/business/levels")).json()
    points = [lv["required_points"] for lv in sorted(ladder, key=lambda lv: lv["order"])]
    assert points == sorted(points) and 200 not in points and 2000 in points
    assert (await boss.call("DELETE", f"/admin/business/levels/{created['id']}")).status_code == 204
    assert_error(await boss.call("DELETE", f"/admin/business/levels/{created['id']}"), 404)


# --- gamification ---------------------------------------------------------------------------


async def test_13_achievements_for_owners_new_users_and_admins(web_server: WebServer) -> None:
    for client in (
        await onboarded(web_server),
        await signed_up(web_server),
        await admin(web_server),
    ):
        r = await client.call("GET", "/gamification/achievements")
        assert r.status_code == 200, r.text
        assert len(r.json()) >= 6
        for achievement in r.json():
            assert_reads(achievement, ACHIEVEMENT)
            assert is_emoji(achievement["badge_icon"]) and achievement["is_unlocked"] is False


async def test_14_to_16_admin_achievements(web_server: WebServer) -> None:
    boss = await admin(web_server)
    form = {
        "title": "Hemat Listrik",
        "description": "Baris satu\nbaris dua",
        "required_points": "500",
        "badge_icon": "💡",
    }
    r = await boss.call("POST", "/admin/gamification/achievements", form)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["description"] == "Baris satu baris dua" and created["required_points"] == 500
    r = await boss.call(
        "PUT",
        f"/admin/gamification/achievements/{created['id']}",
        {**form, "required_points": "750", "title": "Hemat Listrik Banget"},
    )
    assert r.status_code == 200 and r.json()["required_points"] == 750
    r = await boss.call("DELETE", f"/admin/gamification/achievements/{created['id']}")
    assert r.status_code == 204
    body = assert_error(
        await boss.call(
            "POST", "/admin/gamification/achievements", {**form, "required_points": "5.5"}
        ),
        422,
    )
    assert body["message"].startswith("required_points:")


async def test_17_leaderboard_rows(web_server: WebServer) -> None:
    client = await onboarded(web_server, "Sate Madura Cak Dul")
    r = await client.call("GET", "/gamification/leaderboard")
    assert r.status_code == 200, r.text
    rows = r.json()
    assert isinstance(rows, list) and rows
    for row in rows:
        assert_reads(
            row,
            {
                "rank": is_int,
                "business_id": is_str,
                "business_name": is_str,
                "total_points": is_int,
                "user_name": is_str,
                "is_current_user": is_bool,
            },
        )
        assert "user_id" not in row and not is_uuid(row["business_id"])
    assert len({row["business_id"] for row in rows}) == len(rows)
    mine = [row for row in rows if row["is_current_user"]]
    assert len(mine) == 1 and mine[0]["business_name"] == "Sate Madura Cak Dul"
    # Without a business (a new user, an admin): the board all the same, no row of theirs.
    r = await (await signed_up(web_server)).call("GET", "/gamification/leaderboard")
    assert r.status_code == 200 and not any(row["is_current_user"] for row in r.json())


# --- finance -------------------------------------------------------------------------------


async def test_18_to_20_categories(web_server: WebServer) -> None:
    client = await onboarded(web_server)
    r = await client.call("GET", "/finance/categories")
    assert r.status_code == 200, r.text
    for category in r.json():
        assert_reads(
            category,
            {"id": is_uuid, "name": is_str, "type": is_str, "icon": is_str, "is_default": is_bool},
        )
        assert category["type"] in ("income", "expense") and is_emoji(category["icon"])
    default = next(c for c in r.json() if c["is_default"])

    r = await client.call(
        "POST", "/finance/categories", {"name": "Katering", "type": "INCOME", "icon": "🍱"}
    )
    assert r.status_code == 201, r.text
    own = r.json()
    assert own["type"] == "income" and own["icon"] == "🍱" and own["is_default"] is False
    assert_error(await client.call("DELETE", f"/finance/categories/{default['id']}"), 403)
    assert (await client.call("DELETE", f"/finance/categories/{own['id']}")).status_code == 204


async def test_21_to_24_transactions_and_summary(web_server: WebServer) -> None:
    client = await onboarded(web_server)
    categories = (await client.call("GET", "/finance/categories")).json()
    sales = next(c for c in categories if c["type"] == "income")
    r = await client.call(
        "POST",
        "/finance/transactions",
        {
            "amount": 150000,
            "type": "income",
            "category_id": sales["id"],
            "category_name": sales["name"],
            "payment_method": "BANK_TRANSFER",
            "description": "Pesanan nasi kotak",
            "transaction_date": "2025-12-05T03:00:00.000Z",
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert_reads(created, TRANSACTION)
    assert created["payment_method"] == "BANK_TRANSFER" and created["amount"] == 150000
    assert created["category_name"] == sales["name"] and created["type"] == "income"
    assert_reads(created["unlocked_achievement"], UNLOCKED)  # the very first transaction
    assert created["unlocked_achievement"]["title"] == "Catatan Pertama"
    assert created["unlocked_achievement"]["badge_icon"] == "✏️"

    r = await client.call("GET", "/finance/transactions", params={"page": 1, "size": 20})
    assert r.status_code == 200, r.text
    page = r.json()
    for name in ("total", "page", "size", "pages"):
        assert is_int(page[name]), name
    assert page["total"] == 1 and page["page"] == 1 and page["size"] == 20 and page["pages"] == 1
    assert_reads(page["items"][0], TRANSACTION)

    for period in ("day", "week", "month", "year"):
        r = await client.call("GET", "/finance/summary", params={"period": period})
        assert r.status_code == 200, r.text
        summary = r.json()
        for name in ("total_income", "total_expense", "net_profit"):
            assert is_num(summary[name]), name
        for part in summary["income_breakdown"] + summary["expense_breakdown"]:
            assert_reads(part, {"category": is_str, "amount": is_num, "percentage": is_num})

    r = await client.call("DELETE", f"/finance/transactions/{created['id']}")
    assert r.status_code == 204, r.text
    assert (
        await client.call("GET", "/finance/transactions", params={"page": 1, "size": 20})
    ).json()["total"] == 0


# --- milestones ----------------------------------------------------------------------------


async def test_25_to_28_the_roadmap(web_server: WebServer) -> None:
    client = await onboarded(web_server)
    r = await client.http.get("/milestones/", headers={"Authorization": f"Bearer {client.token}"})
    assert r.status_code == 200 and "location" not in r.headers  # no redirect at the slash
    milestones = await generated_roadmap(client)
    assert len(milestones) == 4
    for milestone in milestones:
        assert_reads(milestone, MILESTONE)
        assert milestone["status"] == "pending" and milestone["tasks"]
        for task in milestone["tasks"]:
            assert_reads(task, TASK)
    first = milestones[0]
    r = await client.call("GET", f"/milestones/{first['id']}")
    assert r.status_code == 200 and r.json()["tasks"] == first["tasks"]
    r = await client.call("POST", f"/milestones/{first['id']}/start")  # no body
    assert r.status_code == 200, r.text
    assert r.json()["title"] == first["title"] and r.json()["status"] == "in_progress"
    task = first["tasks"][0]
    r = await client.call("POST", f"/milestones/tasks/{task['id']}/complete")  # no body
    assert r.status_code == 200, r.text
    done = r.json()
    assert_reads(done, TASK)
    assert (
        done["is_completed"] is True and done["reward_points"] > 0 and is_dt(done["completed_at"])
    )
    assert done["title"] == task["title"] and done["milestone_id"] == first["id"]


# --- chat ----------------------------------------------------------------------------------


async def test_29_to_31_chat(web_server: WebServer) -> None:
    client = await signed_up(web_server)  # chat needs no business
    r = await client.call("GET", "/chat/sessions")
    assert r.status_code == 200 and r.json() == []
    reading = await client.chat("Bagaimana cara menaikkan omzet?")
    assert reading.status == 200
    assert reading.headers["content-type"].startswith("text/event-stream")
    assert reading.headers["cache-control"] == "no-cache"
    assert reading.headers["x-accel-buffering"] == "no"
    assert reading.headers["access-control-allow-origin"] == ORIGIN
    [created] = reading.of_type("session_created")
    assert reading.frames[0] is created  # before any token
    assert is_uuid(created["data"]) and created["message"] == "Bagaimana cara menaikkan omzet?"
    assert len(reading.of_type("token")) > 1 and reading.text == web_server.llm.default.text

    r = await client.call("GET", "/chat/sessions")
    assert [s["id"] for s in r.json()] == [created["data"]]
    assert_reads(r.json()[0], {"id": is_uuid, "title": is_str})
    r = await client.call("GET", f"/chat/sessions/{created['data']}")
    assert r.status_code == 200, r.text
    for message in r.json():
        assert_reads(
            message, {"id": is_uuid, "role": is_str, "content": is_str, "created_at": is_dt}
        )
    assert [m["role"] for m in r.json()] == ["user", "assistant"]
    server_log_is_clean(web_server)
