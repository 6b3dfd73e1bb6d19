"""The advisor's domain tools, end to end: POST /chat/stream with the fake LLM calling them.

Every test drives the real app over ASGI: the fake OpenAI-compatible server scripts the
model's tool calls, the real tools run against the real database, and the outcome is
checked through the public API (transactions, points, milestones, the business profile)
— never by calling the tools directly.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.helpers.accounts import API, Account, new_account
from tests.helpers.business import owner_with_business, roadmap_request
from tests.helpers.sse import ChatStream, chat

Args = dict[str, Any] | str
Call = tuple[str, Args]

DOMAIN_TOOL_NAMES = [
    "get_my_account",
    "business_summary",
    "update_business_context",
    "record_transaction",
    "list_transactions",
    "financial_report",
    "list_categories",
    "list_milestones",
    "create_milestone",
    "start_milestone",
    "update_milestone",
    "delete_milestone",
    "complete_task",
]
EXPENSE_CATEGORIES = [
    "Bahan Baku",
    "Gaji",
    "Sewa",
    "Listrik & Air",
    "Transportasi",
    "Pemasaran",
    "Peralatan",
    "Lainnya",
]
INCOME_CATEGORIES = ["Penjualan", "Jasa", "Modal Masuk", "Lainnya"]
FINAL_TEXT = "Sudah, Bu."
CALLS_PER_REPLY = 8  # CHAT_MAX_TOOL_CALLS_PER_RESPONSE: more in one reply are not run


# --- accounts, business and roadmap ---------------------------------------------------------


async def first_roadmap(client: httpx.AsyncClient, owner: Account) -> list[dict[str, Any]]:
    """Wait until the business's first roadmap generation has finished (bounded polling
    of GET /milestones/generation); return the milestones it left."""
    generation = await roadmap_request(client, owner)
    assert generation["status"] == "succeeded", generation
    found = await milestones(client, owner)
    assert len(found) == 4 and all(m["status"] == "pending" for m in found), found
    return found


async def milestones(client: httpx.AsyncClient, owner: Account) -> list[dict[str, Any]]:
    r = await client.get(f"{API}/milestones", headers=owner.headers, params={"limit": 100})
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def milestone(client: httpx.AsyncClient, owner: Account, milestone_id: str) -> httpx.Response:
    return await client.get(f"{API}/milestones/{milestone_id}", headers=owner.headers)


async def delete_via_api(client: httpx.AsyncClient, owner: Account, *ids: str) -> None:
    for milestone_id in ids:
        r = await client.delete(f"{API}/milestones/{milestone_id}", headers=owner.headers)
        assert r.status_code == 204, r.text


def roadmap_state(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a tool could have changed in a roadmap (not `updated_at`)."""
    return [
        (
            m["id"],
            m["title"],
            m["description"],
            m["status"],
            m["order"],
            m["reward_points"],
            tuple((t["id"], t["done"], t["reward_points"]) for t in m["tasks"]),
        )
        for m in items
    ]


async def points(client: httpx.AsyncClient, owner: Account) -> int:
    r = await client.get(f"{API}/gamification/me", headers=owner.headers)
    assert r.status_code == 200, r.text
    return r.json()["total_points"]


async def transactions(client: httpx.AsyncClient, owner: Account) -> dict[str, Any]:
    r = await client.get(
        f"{API}/finance/transactions", headers=owner.headers, params={"limit": 100}
    )
    assert r.status_code == 200, r.text
    return r.json()


async def category_id(client: httpx.AsyncClient, owner: Account, type_: str, name: str) -> str:
    r = await client.get(f"{API}/finance/categories", headers=owner.headers, params={"type": type_})
    assert r.status_code == 200, r.text
    return next(c["id"] for c in r.json() if c["name"] == name)


async def business(client: httpx.AsyncClient, owner: Account) -> dict[str, Any]:
    r = await client.get(f"{API}/business/me", headers=owner.headers)
    assert r.status_code == 200, r.text
    return r.json()


# --- chat turns -------------------------------------------------------------------------------


async def turn(
    client: httpx.AsyncClient,
    fake: FakeLLMServer,
    owner: Account,
    *replies: Reply,
    content: str = "Tolong urus ini, Reka.",
    session_id: str | None = None,
) -> ChatStream:
    """One successful chat turn in which the model answers with `replies`, then text."""
    fake.script(*replies, Reply.of_text(FINAL_TEXT))
    stream = await chat(client, owner.headers, content, session_id)
    assert stream.status == 200, stream.body
    assert stream.names[0] == "session", stream.events
    assert stream.names[-2:] == ["message", "done"], stream.events
    assert stream.text == FINAL_TEXT
    return stream


async def call_tools(
    client: httpx.AsyncClient,
    fake: FakeLLMServer,
    owner: Account,
    *calls: Call,
    session_id: str | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """One turn in which the model makes `calls` (in one reply, or in as many replies of
    CHAT_MAX_TOOL_CALLS_PER_RESPONSE calls as they need); their tool_result events in
    order, and the chat session's id."""
    replies = [
        Reply.tool_calls_of(*calls[i : i + CALLS_PER_REPLY])
        for i in range(0, len(calls), CALLS_PER_REPLY)
    ]
    stream = await turn(client, fake, owner, *replies, session_id=session_id)
    results = stream.all("tool_result")
    assert [r["name"] for r in results] == [name for name, _ in calls], stream.events
    return results, stream.first("session")["session_id"]


async def call_tool(
    client: httpx.AsyncClient,
    fake: FakeLLMServer,
    owner: Account,
    name: str,
    arguments: Args,
    *,
    session_id: str | None = None,
) -> dict[str, Any]:
    results, _ = await call_tools(client, fake, owner, (name, arguments), session_id=session_id)
    return results[0]


def ok(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON output of a successful tool result."""
    assert result["is_error"] is False, result
    return json.loads(result["output"])


def refused(result: dict[str, Any], *needles: str) -> str:
    """The text of an error result, which must mention every needle (case-insensitive)."""
    assert result["is_error"] is True, result
    text = result["output"]
    assert text.startswith("Error:"), text
    for needle in needles:
        assert needle.lower() in text.lower(), (needle, text)
    return text


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A JSON-schema node with a local `$ref` followed."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = schema
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def without_null(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of an optional schema node."""
    options = node.get("anyOf", [node])
    return [o for o in options if o.get("type") != "null"]


# --- the tools the model is offered ------------------------------------------------------------


async def test_the_model_is_offered_every_domain_tool_with_its_real_schema(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    fake_llm.script(Reply.of_text("Halo!"))
    stream = await chat(ai_client, owner.headers, "Halo")
    assert stream.names[-1] == "done", stream.events

    offered = fake_llm.requests[0]["tools"]
    assert all(t["type"] == "function" for t in offered)
    names = [t["function"]["name"] for t in offered]
    assert names[: len(DOMAIN_TOOL_NAMES)] == DOMAIN_TOOL_NAMES, names
    tools = {t["function"]["name"]: t["function"] for t in offered}
    for name in DOMAIN_TOOL_NAMES:
        assert len(tools[name]["description"]) > 20, name
        assert tools[name]["parameters"]["type"] == "object", name

    record = tools["record_transaction"]["parameters"]
    assert set(record["required"]) == {"type", "amount", "category"}
    props = record["properties"]
    assert set(props) == {"type", "amount", "category", "note", "occurred_at"}
    assert resolve(record, props["type"])["enum"] == ["income", "expense"]
    assert props["amount"]["type"] == "integer"
    assert props["amount"]["exclusiveMinimum"] == 0
    assert props["amount"]["maximum"] == 1_000_000_000_000
    assert props["category"]["type"] == "string" and props["category"]["maxLength"] == 60
    assert props["note"]["type"] == "string"
    assert without_null(props["occurred_at"]) == [{"format": "date-time", "type": "string"}]

    create = tools["create_milestone"]["parameters"]
    assert set(create["required"]) == {"title", "tasks"}
    tasks = create["properties"]["tasks"]
    assert tasks["type"] == "array" and tasks["items"]["type"] == "string"
    assert (tasks["minItems"], tasks["maxItems"]) == (1, 10)
    difficulty = create["properties"]["difficulty"]
    assert difficulty["type"] == "integer"
    assert (difficulty["minimum"], difficulty["maximum"]) == (1, 5)
    assert without_null(create["properties"]["replaces_milestone_id"]) == [
        {"format": "uuid", "type": "string"}
    ]

    delete = tools["delete_milestone"]["parameters"]
    assert delete["required"] == ["milestone_id"]
    assert delete["properties"]["confirm"]["type"] == "boolean"
    assert delete["properties"]["confirm"]["default"] is False
    milestone_id = delete["properties"]["milestone_id"]
    assert (milestone_id["type"], milestone_id["format"]) == ("string", "uuid")

    complete = tools["complete_task"]["parameters"]
    assert set(complete["required"]) == {"milestone_id", "task_id"}

    facts = tools["update_business_context"]["parameters"]["properties"]["facts"]
    assert facts["type"] == "object"
    assert (facts["minProperties"], facts["maxProperties"]) == (1, 20)
    value_types = {o.get("type") for o in facts["additionalProperties"]["anyOf"]}
    assert value_types == {"string", "integer", "number", "boolean", "null"}

    report = tools["financial_report"]["parameters"]["properties"]
    assert report["period"]["enum"] == ["day", "week", "month", "year", "custom"]
    status = tools["list_milestones"]["parameters"]["properties"]["status"]
    assert status["enum"] == ["active", "pending", "in_progress", "completed", "all"]
    for name in ("get_my_account", "business_summary"):
        assert tools[name]["parameters"]["properties"] == {}


# --- finance ------------------------------------------------------------------------------------


async def test_recording_an_expense_through_chat(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    assert await points(ai_client, owner) == 0
    arguments = {
        "type": "expense",
        "amount": 150000,
        "category": "bAHAN bAKU",
        "note": "Beli beras 10 kg di Pasar Induk",
    }
    fake_llm.script(
        Reply.tool_call("record_transaction", arguments),
        Reply.of_text("Sudah saya catat pengeluaran Rp150.000, Bu.", chunk_size=7),
    )
    stream = await chat(ai_client, owner.headers, "Tadi beli beras 150 ribu")

    assert stream.names[:3] == ["session", "tool_call", "tool_result"], stream.names
    assert stream.names[-2:] == ["message", "done"]
    assert set(stream.names[3:-2]) == {"delta"}
    call, result = stream.first("tool_call"), stream.first("tool_result")
    assert call["name"] == "record_transaction" and call["arguments"] == arguments
    assert result["id"] == call["id"] and result["name"] == "record_transaction"
    output = ok(result)
    assert output["points_awarded"] == 5
    recorded = output["recorded"]
    assert recorded["type"] == "expense" and recorded["amount"] == 150000
    assert recorded["category"] == "Bahan Baku"  # the category's own name, not the model's
    assert recorded["note"] == "Beli beras 10 kg di Pasar Induk"
    assert stream.text == "Sudah saya catat pengeluaran Rp150.000, Bu."
    assert stream.first("message")["content"] == stream.text

    page = await transactions(ai_client, owner)
    assert page["total"] == 1
    entry = page["items"][0]
    assert entry["id"] == recorded["id"]
    assert (entry["type"], entry["amount"], entry["category_name"], entry["note"]) == (
        "expense",
        150000,
        "Bahan Baku",
        "Beli beras 10 kg di Pasar Induk",
    )
    assert await points(ai_client, owner) == 5

    # The model was given the real result, tied to its call.
    tool_message = next(m for m in fake_llm.requests[1]["messages"] if m["role"] == "tool")
    assert tool_message["tool_call_id"] == call["id"]
    assert json.loads(tool_message["content"]) == output


async def test_an_unknown_or_mistyped_category_lists_the_valid_names(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    unknown, wrong_type = (
        await call_tools(
            ai_client,
            fake_llm,
            owner,
            ("record_transaction", {"type": "expense", "amount": 25000, "category": "Jajan"}),
            ("record_transaction", {"type": "income", "amount": 25000, "category": "Gaji"}),
        )
    )[0]
    text = refused(unknown, "Jajan", *EXPENSE_CATEGORIES)
    assert "Penjualan" not in text  # only the names of the type asked for
    text = refused(wrong_type, "Gaji", *INCOME_CATEGORIES)
    assert "Bahan Baku" not in text
    assert (await transactions(ai_client, owner))["total"] == 0
    assert await points(ai_client, owner) == 0


async def test_bad_amounts_are_error_results_and_record_nothing(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    bad_amounts: list[Any] = [0, -150000, 2**70, "150000", 150000.5, None, 1_000_000_000_001]
    calls: list[Call] = [
        ("record_transaction", {"type": "expense", "amount": amount, "category": "Gaji"})
        for amount in bad_amounts
    ]
    results, _ = await call_tools(ai_client, fake_llm, owner, *calls)
    for result in results:
        refused(result, "invalid arguments", "amount")
    assert (await transactions(ai_client, owner))["total"] == 0
    assert await points(ai_client, owner) == 0


async def test_listing_and_reporting_what_was_recorded(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    recorded, _ = await call_tools(
        ai_client,
        fake_llm,
        owner,
        ("record_transaction", {"type": "income", "amount": 500000, "category": "penjualan"}),
        ("record_transaction", {"type": "expense", "amount": 150000, "category": "Bahan Baku"}),
        (
            "record_transaction",
            {"type": "expense", "amount": 50000, "category": "TRANSPORTASI", "note": "Bensin"},
        ),
    )
    ids = [ok(r)["recorded"]["id"] for r in recorded]
    assert [ok(r)["points_awarded"] for r in recorded] == [5, 5, 5]

    every, expenses, found, limited, report, categories = (
        await call_tools(
            ai_client,
            fake_llm,
            owner,
            ("list_transactions", {}),
            ("list_transactions", {"type": "expense"}),
            ("list_transactions", {"text": "bensin"}),
            ("list_transactions", {"limit": 1}),
            ("financial_report", {"period": "month"}),
            ("list_categories", {"type": "expense"}),
        )
    )[0]

    listed = ok(every)
    assert listed["total"] == 3
    assert {t["id"] for t in listed["transactions"]} == set(ids)
    assert {(t["type"], t["amount"], t["category"]) for t in listed["transactions"]} == {
        ("income", 500000, "Penjualan"),
        ("expense", 150000, "Bahan Baku"),
        ("expense", 50000, "Transportasi"),
    }
    only_expenses = ok(expenses)
    assert only_expenses["total"] == 2
    assert {t["type"] for t in only_expenses["transactions"]} == {"expense"}
    searched = ok(found)
    assert searched["total"] == 1 and searched["transactions"][0]["note"] == "Bensin"
    first_page = ok(limited)
    assert first_page["total"] == 3 and len(first_page["transactions"]) == 1

    summary = ok(report)
    assert (summary["income"], summary["expense"], summary["net"], summary["count"]) == (
        500000,
        200000,
        300000,
        3,
    )
    assert summary["period"] == "month" and "series" not in summary
    assert summary["by_category"] == [
        {"category_name": "Penjualan", "type": "income", "total": 500000, "count": 1},
        {"category_name": "Bahan Baku", "type": "expense", "total": 150000, "count": 1},
        {"category_name": "Transportasi", "type": "expense", "total": 50000, "count": 1},
    ]
    # The same numbers the app shows.
    r = await ai_client.get(
        f"{API}/finance/summary", headers=owner.headers, params={"period": "month"}
    )
    assert r.status_code == 200, r.text
    shown = r.json()
    assert (shown["income"], shown["expense"], shown["net"], shown["start"], shown["end"]) == (
        summary["income"],
        summary["expense"],
        summary["net"],
        summary["start"],
        summary["end"],
    )

    names = [c["name"] for c in ok(categories)["categories"]]
    assert sorted(names) == sorted(EXPENSE_CATEGORIES)
    assert {c["type"] for c in ok(categories)["categories"]} == {"expense"}


async def test_a_time_without_offset_is_the_business_local_time(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    recorded = ok(
        await call_tool(
            ai_client,
            fake_llm,
            owner,
            "record_transaction",
            {
                "type": "income",
                "amount": 75000,
                "category": "Jasa",
                "occurred_at": "2025-03-01T05:30:00",
            },
        )
    )["recorded"]
    assert recorded["occurred_at"] == "2025-02-28T22:30:00+00:00"  # 05:30 WIB
    (entry,) = (await transactions(ai_client, owner))["items"]
    assert entry["occurred_at"].startswith("2025-02-28T22:30:00")

    on_the_day, day_before = (
        await call_tools(
            ai_client,
            fake_llm,
            owner,
            ("financial_report", {"period": "day", "date": "2025-03-01"}),
            ("financial_report", {"period": "day", "date": "2025-02-28"}),
        )
    )[0]
    assert ok(on_the_day)["income"] == 75000 and ok(on_the_day)["start"] == "2025-03-01"
    assert ok(day_before)["income"] == 0


async def test_list_categories_matches_the_app_and_shows_only_my_own(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    other = await owner_with_business(ai_client)
    for account, name in ((owner, "Katering"), (other, "Rahasia Tetangga")):
        r = await ai_client.post(
            f"{API}/finance/categories",
            headers=account.headers,
            json={"type": "income", "name": name},
        )
        assert r.status_code == 201, r.text

    result = await call_tool(ai_client, fake_llm, owner, "list_categories", {})
    listed = ok(result)["categories"]
    r = await ai_client.get(f"{API}/finance/categories", headers=owner.headers)
    assert r.status_code == 200, r.text
    assert {(c["id"], c["type"], c["name"]) for c in listed} == {
        (c["id"], c["type"], c["name"]) for c in r.json()
    }
    names = {(c["type"], c["name"]) for c in listed}
    assert ("income", "Katering") in names and ("income", "Rahasia Tetangga") not in names
    assert {n for t, n in names if t == "expense"} == set(EXPENSE_CATEGORIES)


# --- business and account ------------------------------------------------------------------------


async def test_business_summary_and_my_account(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client, name="Kopi Kenangan Bu Sari")
    await first_roadmap(ai_client, owner)
    r = await ai_client.post(
        f"{API}/finance/transactions",
        headers=owner.headers,
        json={
            "type": "income",
            "amount": 80000,
            "category_id": await category_id(ai_client, owner, "income", "Penjualan"),
        },
    )
    assert r.status_code == 201, r.text

    summary_result, account_result = (
        await call_tools(
            ai_client, fake_llm, owner, ("business_summary", {}), ("get_my_account", {})
        )
    )[0]
    summary = ok(summary_result)
    stats = (await ai_client.get(f"{API}/gamification/me", headers=owner.headers)).json()
    assert summary == {
        "name": "Kopi Kenangan Bu Sari",
        "category": "Kuliner",
        "stage": "startup",
        "points": 5,
        "level": "Pemula",
        "next_level": "Tekun",
        "points_to_next_level": 95,
        "achievements": ["Catatan Pertama"],
        "active_milestones": 4,
    }
    assert summary["points"] == stats["total_points"]
    assert summary["level"] == stats["level"]["name"]
    assert summary["points_to_next_level"] == stats["points_to_next_level"]
    assert summary["achievements"] == [a["title"] for a in stats["unlocked"]]

    me = (await ai_client.get(f"{API}/auth/me", headers=owner.headers)).json()
    assert ok(account_result) == {
        "name": "Bu Sari",
        "email": owner.email,
        "role": "user",
        "member_since": me["created_at"][:10],
    }


async def test_update_business_context_merges_and_forgets_facts(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    result = await call_tool(
        ai_client,
        fake_llm,
        owner,
        "update_business_context",
        {"facts": {"supplier": "Pasar Induk", "employees": 3, "buka_minggu": True}},
    )
    assert ok(result) == {
        "remembered": ["buka_minggu", "employees", "supplier"],
        "forgotten": [],
        "facts_total": 3,
    }
    assert (await business(ai_client, owner))["ai_context"] == {
        "supplier": "Pasar Induk",
        "employees": 3,
        "buka_minggu": True,
    }

    result = await call_tool(
        ai_client,
        fake_llm,
        owner,
        "update_business_context",
        {"facts": {"employees": None, "harga_kopi": 8000, "supplier": "Pasar Caringin"}},
    )
    assert ok(result) == {
        "remembered": ["harga_kopi", "supplier"],
        "forgotten": ["employees"],
        "facts_total": 3,
    }
    assert (await business(ai_client, owner))["ai_context"] == {
        "supplier": "Pasar Caringin",
        "buka_minggu": True,
        "harga_kopi": 8000,
    }
    # The advisor's memory reaches the next conversation's system prompt.
    await turn(ai_client, fake_llm, owner)
    system = fake_llm.requests[-1]["messages"][0]
    assert system["role"] == "system" and "Pasar Caringin" in system["content"]
    assert "employees" not in system["content"]


async def test_oversized_facts_are_refused_and_change_nothing(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    first_half = {f"catatan_{i:02d}": "a" * 500 for i in range(16)}
    ok(
        await call_tool(
            ai_client, fake_llm, owner, "update_business_context", {"facts": first_half}
        )
    )
    assert (await business(ai_client, owner))["ai_context"] == first_half

    second_half = {f"lanjutan_{i:02d}": "b" * 500 for i in range(16)}  # > 16 KiB together
    results, _ = await call_tools(
        ai_client,
        fake_llm,
        owner,
        ("update_business_context", {"facts": second_half}),
        ("update_business_context", {"facts": {"cerita": "c" * 501}}),
        ("update_business_context", {"facts": {f"k{i}": i for i in range(21)}}),
        ("update_business_context", {"facts": {"k" * 61: "panjang"}}),
        ("update_business_context", {"facts": {f"e{i}": "é" * 500 for i in range(17)}}),
        ("update_business_context", {"facts": {}}),
    )
    refused(results[0], "16384 bytes")
    refused(results[1], "invalid arguments", "500")
    refused(results[2], "invalid arguments", "20")
    refused(results[3], "invalid arguments", "60")
    refused(results[4], "16384 bytes")  # 500 characters, but 1000 bytes each
    refused(results[5], "invalid arguments")
    assert (await business(ai_client, owner))["ai_context"] == first_half


# --- who owns what ------------------------------------------------------------------------------


async def test_tools_never_reach_another_owners_data(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    victim = await owner_with_business(ai_client)
    intruder = await owner_with_business(ai_client)
    target = (await first_roadmap(ai_client, victim))[0]
    target_task = target["tasks"][0]["id"]
    own = (await first_roadmap(ai_client, intruder))[0]
    before = roadmap_state(await milestones(ai_client, victim))
    secret = await category_id(ai_client, victim, "expense", "Gaji")
    r = await ai_client.post(
        f"{API}/finance/categories",
        headers=victim.headers,
        json={"type": "expense", "name": "Kulakan Rahasia"},
    )
    assert r.status_code == 201, r.text
    victims_category = r.json()["id"]
    r = await ai_client.post(
        f"{API}/finance/transactions",
        headers=victim.headers,
        json={"type": "expense", "amount": 777000, "category_id": secret, "note": "gaji"},
    )
    assert r.status_code == 201, r.text

    results, session_id = await call_tools(
        ai_client,
        fake_llm,
        intruder,
        ("start_milestone", {"milestone_id": target["id"]}),
        ("update_milestone", {"milestone_id": target["id"], "title": "Dibajak"}),
        ("complete_task", {"milestone_id": target["id"], "task_id": target_task}),
        ("complete_task", {"milestone_id": own["id"], "task_id": target_task}),
        ("delete_milestone", {"milestone_id": target["id"]}),
        ("delete_milestone", {"milestone_id": target["id"], "confirm": True}),
        (
            "create_milestone",
            {"title": "Punyaku", "tasks": ["Satu"], "replaces_milestone_id": target["id"]},
        ),
        (
            "record_transaction",
            {"type": "expense", "amount": 1000, "category": victims_category},
        ),
    )
    for result in results[:7]:
        refused(result, "not found")
    refused(results[7], "No expense category")
    # A preview of someone else's milestone is no preview: a later turn cannot delete it.
    again = await call_tool(
        ai_client,
        fake_llm,
        intruder,
        "delete_milestone",
        {"milestone_id": target["id"], "confirm": True},
        session_id=session_id,
    )
    refused(again, "not found")

    listed, report = (
        await call_tools(
            ai_client,
            fake_llm,
            intruder,
            ("list_transactions", {}),
            ("financial_report", {"period": "month"}),
        )
    )[0]
    assert ok(listed) == {"total": 0, "transactions": []}
    assert ok(report)["expense"] == 0 and ok(report)["by_category"] == []
    roadmap = ok(
        await call_tool(ai_client, fake_llm, intruder, "list_milestones", {"status": "all"})
    )
    assert roadmap["total"] == 4
    assert target["id"] not in {m["id"] for m in roadmap["milestones"]}

    assert roadmap_state(await milestones(ai_client, victim)) == before
    assert (await milestone(ai_client, victim, target["id"])).status_code == 200
    assert await points(ai_client, victim) == 5
    assert await points(ai_client, intruder) == 0
    assert (await transactions(ai_client, intruder))["total"] == 0
    mine = await milestones(ai_client, intruder)
    assert all(not t["done"] for m in mine for t in m["tasks"]) and len(mine) == 4


async def test_business_tools_need_a_business_profile(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await new_account(ai_client)
    calls: list[Call] = [
        ("business_summary", {}),
        ("update_business_context", {"facts": {"supplier": "Pasar Induk"}}),
        ("record_transaction", {"type": "expense", "amount": 1000, "category": "Gaji"}),
        ("list_transactions", {}),
        ("financial_report", {}),
        ("list_categories", {}),
        ("list_milestones", {}),
        ("create_milestone", {"title": "Mulai", "tasks": ["Satu"]}),
        ("start_milestone", {"milestone_id": str(uuid.uuid4())}),
        (
            "complete_task",
            {"milestone_id": str(uuid.uuid4()), "task_id": str(uuid.uuid4())},
        ),
        ("get_my_account", {}),
    ]
    results, _ = await call_tools(ai_client, fake_llm, owner, *calls)
    for result in results[:-1]:
        refused(result, "business profile")
    assert ok(results[-1])["email"] == owner.email
    r = await ai_client.get(f"{API}/business/me", headers=owner.headers)
    assert r.status_code == 404


# --- roadmap rules ------------------------------------------------------------------------------


NEW_MILESTONE: dict[str, Any] = {
    "title": "Buka cabang kedua",
    "description": "Sewa tempat di dekat kampus",
    "difficulty": 3,
    "tasks": ["Survei lokasi", "Hitung modal", "Tanda tangan sewa"],
}


async def test_create_milestone_is_refused_while_active_milestones_exist(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    before = roadmap_state(await first_roadmap(ai_client, owner))
    result = await call_tool(ai_client, fake_llm, owner, "create_milestone", NEW_MILESTONE)
    refused(result, "4 active milestone")
    assert roadmap_state(await milestones(ai_client, owner)) == before


async def test_create_milestone_when_none_are_active(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    await delete_via_api(
        ai_client, owner, *(m["id"] for m in await first_roadmap(ai_client, owner))
    )
    created = ok(await call_tool(ai_client, fake_llm, owner, "create_milestone", NEW_MILESTONE))
    brief = created["created"]
    assert created["replaced"] is None
    # The advisor's milestone is not a generated one: the base rate, whatever its
    # difficulty (5 a task, a bonus of 20).
    assert (brief["title"], brief["status"], brief["difficulty"], brief["bonus_points"]) == (
        "Buka cabang kedua",
        "pending",
        3,
        20,
    )
    assert [(t["title"], t["done"], t["points"]) for t in brief["tasks"]] == [
        ("Survei lokasi", False, 5),
        ("Hitung modal", False, 5),
        ("Tanda tangan sewa", False, 5),
    ]
    (shown,) = await milestones(ai_client, owner)
    assert shown["id"] == brief["id"] and shown["ai_generated"] is False
    assert [t["id"] for t in shown["tasks"]] == [t["id"] for t in brief["tasks"]]

    # Now one is active: the next one (even in the same reply as another) is refused.
    results, _ = await call_tools(
        ai_client,
        fake_llm,
        owner,
        ("create_milestone", {**NEW_MILESTONE, "title": "Kedua"}),
        ("create_milestone", {**NEW_MILESTONE, "title": "Ketiga"}),
    )
    for result in results:
        refused(result, "1 active milestone")
    assert [m["id"] for m in await milestones(ai_client, owner)] == [brief["id"]]

    # Completing it pays that rate.
    calls: list[Call] = [
        ("complete_task", {"milestone_id": brief["id"], "task_id": t["id"]}) for t in brief["tasks"]
    ]
    outcomes = [ok(r) for r in (await call_tools(ai_client, fake_llm, owner, *calls))[0]]
    assert [o["points_awarded"] for o in outcomes] == [5, 5, 5]
    assert outcomes[-1]["milestone_completed"] is True and outcomes[-1]["bonus_awarded"] == 20
    assert await points(ai_client, owner) == 35


async def test_create_milestone_replacing_a_pending_one_in_a_full_roadmap(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    roadmap = await first_roadmap(ai_client, owner)
    old = roadmap[1]
    result = await call_tool(
        ai_client,
        fake_llm,
        owner,
        "create_milestone",
        {**NEW_MILESTONE, "replaces_milestone_id": old["id"]},
    )
    created = ok(result)
    assert created["replaced"] == old["id"]
    assert (await milestone(ai_client, owner, old["id"])).status_code == 404
    now = await milestones(ai_client, owner)
    assert len(now) == 4 and created["created"]["id"] in {m["id"] for m in now}


async def test_create_milestone_replacing_the_only_active_pending_one(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    roadmap = await first_roadmap(ai_client, owner)
    old = roadmap[0]
    await delete_via_api(ai_client, owner, *(m["id"] for m in roadmap[1:]))

    created = ok(
        await call_tool(
            ai_client,
            fake_llm,
            owner,
            "create_milestone",
            {**NEW_MILESTONE, "replaces_milestone_id": old["id"]},
        )
    )
    assert created["replaced"] == old["id"]
    assert (await milestone(ai_client, owner, old["id"])).status_code == 404
    (shown,) = await milestones(ai_client, owner)
    assert shown["id"] == created["created"]["id"] and shown["title"] == "Buka cabang kedua"


async def test_an_in_progress_milestone_cannot_be_replaced(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    roadmap = await first_roadmap(ai_client, owner)
    old = roadmap[0]
    await delete_via_api(ai_client, owner, *(m["id"] for m in roadmap[1:]))
    started = ok(
        await call_tool(ai_client, fake_llm, owner, "start_milestone", {"milestone_id": old["id"]})
    )
    assert started["started"]["status"] == "in_progress"
    before = roadmap_state(await milestones(ai_client, owner))

    result = await call_tool(
        ai_client,
        fake_llm,
        owner,
        "create_milestone",
        {**NEW_MILESTONE, "replaces_milestone_id": old["id"]},
    )
    refused(result, "not started")
    assert roadmap_state(await milestones(ai_client, owner)) == before


async def test_update_and_start_milestone(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    target = (await first_roadmap(ai_client, owner))[2]
    updated, started, listed = (
        await call_tools(
            ai_client,
            fake_llm,
            owner,
            (
                "update_milestone",
                {"milestone_id": target["id"], "title": "  Promosi di Instagram  "},
            ),
            ("start_milestone", {"milestone_id": target["id"]}),
            ("list_milestones", {"status": "in_progress"}),
        )
    )[0]
    assert ok(updated)["updated"]["title"] == "Promosi di Instagram"
    assert ok(updated)["updated"]["description"] == target["description"]
    assert ok(started)["started"]["status"] == "in_progress"
    in_progress = ok(listed)
    assert in_progress["total"] == 1 and in_progress["milestones"][0]["id"] == target["id"]
    shown = (await milestone(ai_client, owner, target["id"])).json()
    assert (shown["title"], shown["status"]) == ("Promosi di Instagram", "in_progress")
    assert shown["started_at"] is not None


async def test_delete_needs_a_preview_in_an_earlier_turn_of_the_same_chat(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    unasked, same_turn, elsewhere, spare = await first_roadmap(ai_client, owner)

    # Turn 1 of chat S: a confirm without any preview, and a preview + confirm together.
    stream = await turn(
        ai_client,
        fake_llm,
        owner,
        Reply.tool_call("delete_milestone", {"milestone_id": unasked["id"], "confirm": True}),
        Reply.tool_call("delete_milestone", {"milestone_id": same_turn["id"]}),
        Reply.tool_call("delete_milestone", {"milestone_id": same_turn["id"], "confirm": True}),
        content="Hapus dua milestone itu",
    )
    chat_s = stream.first("session")["session_id"]
    no_preview, preview, too_soon = stream.all("tool_result")
    refused(no_preview, "confirm")
    shown = ok(preview)["preview"]
    assert shown["id"] == same_turn["id"] and shown["title"] == same_turn["title"]
    assert [t["id"] for t in shown["tasks"]] == [t["id"] for t in same_turn["tasks"]]
    refused(too_soon, "confirm")
    assert (await milestone(ai_client, owner, unasked["id"])).status_code == 200
    assert (await milestone(ai_client, owner, same_turn["id"])).status_code == 200

    # A preview in another chat.
    ok(
        await call_tool(
            ai_client, fake_llm, owner, "delete_milestone", {"milestone_id": elsewhere["id"]}
        )
    )

    # Turn 2 of chat S, after the owner said yes.
    results, session_id = await call_tools(
        ai_client,
        fake_llm,
        owner,
        ("delete_milestone", {"milestone_id": elsewhere["id"], "confirm": True}),
        ("delete_milestone", {"milestone_id": unasked["id"], "confirm": True}),
        ("delete_milestone", {"milestone_id": same_turn["id"], "confirm": True}),
        session_id=chat_s,
    )
    assert session_id == chat_s
    refused(results[0], "confirm")  # previewed, but in another chat
    refused(results[1], "confirm")  # a refused confirm is not a preview
    assert ok(results[2]) == {"deleted": {"id": same_turn["id"], "title": same_turn["title"]}}

    assert (await milestone(ai_client, owner, same_turn["id"])).status_code == 404
    for kept in (unasked, elsewhere, spare):
        assert (await milestone(ai_client, owner, kept["id"])).status_code == 200
    assert len(await milestones(ai_client, owner)) == 3


async def test_a_preview_two_turns_back_no_longer_allows_the_delete(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    """The owner saw the preview, then talked about something else: a confirm now is not
    an answer to that preview. A new preview, answered in the next turn, is."""
    owner = await owner_with_business(ai_client)
    target = (await first_roadmap(ai_client, owner))[0]
    ref = {"milestone_id": target["id"]}
    _, chat_s = await call_tools(ai_client, fake_llm, owner, ("delete_milestone", ref))
    await turn(
        ai_client, fake_llm, owner, content="Nanti dulu. Omzet minggu ini?", session_id=chat_s
    )

    stale = await call_tool(
        ai_client, fake_llm, owner, "delete_milestone", {**ref, "confirm": True}, session_id=chat_s
    )
    refused(stale, "confirm")
    assert (await milestone(ai_client, owner, target["id"])).status_code == 200

    ok(await call_tool(ai_client, fake_llm, owner, "delete_milestone", ref, session_id=chat_s))
    deleted = await call_tool(
        ai_client, fake_llm, owner, "delete_milestone", {**ref, "confirm": True}, session_id=chat_s
    )
    assert ok(deleted) == {"deleted": {"id": target["id"], "title": target["title"]}}
    assert (await milestone(ai_client, owner, target["id"])).status_code == 404


async def test_complete_task_awards_its_points(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    target = (await first_roadmap(ai_client, owner))[0]
    task = target["tasks"][0]
    assert task["reward_points"] > 0
    ref = {"milestone_id": target["id"], "task_id": task["id"]}

    first = ok(await call_tool(ai_client, fake_llm, owner, "complete_task", ref))
    assert first["already_done"] is False and first["points_awarded"] == task["reward_points"]
    assert first["milestone"]["status"] == "in_progress"  # working on it is starting it
    assert first["milestone_completed"] is False and first["bonus_awarded"] == 0
    assert await points(ai_client, owner) == task["reward_points"]
    shown = (await milestone(ai_client, owner, target["id"])).json()
    assert shown["tasks_done"] == 1 and shown["tasks"][0]["done"] is True


async def test_complete_task_twice_is_already_done_and_pays_once(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    target = (await first_roadmap(ai_client, owner))[0]
    task = target["tasks"][0]
    ref = {"milestone_id": target["id"], "task_id": task["id"]}
    ok(await call_tool(ai_client, fake_llm, owner, "complete_task", ref))

    second = await call_tool(ai_client, fake_llm, owner, "complete_task", ref)
    assert await points(ai_client, owner) == task["reward_points"]  # paid once either way
    again = ok(second)
    assert again["already_done"] is True and again["points_awarded"] == 0
    assert again["milestone"]["tasks"][0]["done"] is True


async def test_completing_every_task_completes_the_milestone_with_its_bonus(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    target = (await first_roadmap(ai_client, owner))[0]
    calls: list[Call] = [
        ("complete_task", {"milestone_id": target["id"], "task_id": t["id"]})
        for t in target["tasks"]
    ]
    results, _ = await call_tools(ai_client, fake_llm, owner, *calls)
    outcomes = [ok(r) for r in results]
    assert [o["points_awarded"] for o in outcomes] == [t["reward_points"] for t in target["tasks"]]
    assert [o["milestone_completed"] for o in outcomes] == [False, False, True]
    assert outcomes[-1]["bonus_awarded"] == target["reward_points"]
    assert outcomes[-1]["next_roadmap_requested"] is False  # three milestones still active
    expected = sum(t["reward_points"] for t in target["tasks"]) + target["reward_points"]
    assert await points(ai_client, owner) == expected
    shown = (await milestone(ai_client, owner, target["id"])).json()
    assert shown["status"] == "completed" and shown["completed_at"] is not None
    restart = await call_tool(
        ai_client, fake_llm, owner, "start_milestone", {"milestone_id": target["id"]}
    )
    refused(restart, "already completed")
    listed = ok(await call_tool(ai_client, fake_llm, owner, "list_milestones", {}))
    assert listed["total"] == 3 and target["id"] not in {m["id"] for m in listed["milestones"]}


# --- garbage in ---------------------------------------------------------------------------------


async def test_garbage_arguments_are_error_results_and_change_nothing(
    ai_client: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    owner = await owner_with_business(ai_client)
    roadmap = await first_roadmap(ai_client, owner)
    first = roadmap[0]
    ok(await call_tool(ai_client, fake_llm, owner, "update_business_context", {"facts": {"a": 1}}))
    before = (
        roadmap_state(await milestones(ai_client, owner)),
        await points(ai_client, owner),
        (await transactions(ai_client, owner))["total"],
        (await business(ai_client, owner))["ai_context"],
    )
    invented = str(uuid.uuid4())
    garbage: list[Call] = [
        ("record_transaction", {"type": "gift", "amount": 1000, "category": "Gaji"}),
        ("record_transaction", {"amount": 1000}),
        ("record_transaction", {"type": "expense", "amount": 1000, "category": ""}),
        ("record_transaction", {"type": "expense", "amount": 1000, "category": invented}),
        (
            "record_transaction",
            {"type": "expense", "amount": 1000, "category": "Gaji", "occurred_at": "kemarin"},
        ),
        (
            "record_transaction",
            {"type": "expense", "amount": 1000, "category": "Gaji", "occurred_at": "9999-01-01"},
        ),
        (
            "record_transaction",
            {"type": "expense", "amount": 1000, "category": "Gaji", "occurred_at": "2099-01-01"},
        ),
        (
            "record_transaction",
            {"type": "expense", "amount": 1000, "category": "Gaji", "occurred_at": "1999-12-31"},
        ),
        (
            "record_transaction",
            {"type": "expense", "amount": 1000, "category": "Gaji", "note": "a\u0000b"},
        ),
        ("record_transaction", {"type": ["expense"], "amount": {"x": 1}, "category": 7}),
        ("list_transactions", {"limit": 0}),
        ("list_transactions", {"limit": 10**9}),
        ("list_transactions", {"start": "2025-13-45"}),
        ("list_transactions", {"start": "2025-02-01", "end": "2025-01-01"}),
        ("financial_report", {"period": "decade"}),
        ("financial_report", {"period": "custom"}),
        ("financial_report", {"period": "custom", "start": "2000-01-01", "end": "2099-12-31"}),
        ("financial_report", {"date": "0001-01-01"}),
        ("list_categories", {"type": "both"}),
        ("list_milestones", {"status": "deleted"}),
        ("start_milestone", {"milestone_id": "'; DROP TABLE milestones; --"}),
        ("start_milestone", {"milestone_id": invented}),
        ("start_milestone", {"milestone_id": 12345}),
        ("start_milestone", {}),
        ("update_milestone", {"milestone_id": first["id"], "title": ""}),
        ("update_milestone", {"milestone_id": first["id"], "title": "x" * 201}),
        ("update_milestone", {"milestone_id": first["id"], "title": "baris\nbaru"}),
        ("update_milestone", {"milestone_id": invented, "title": "Hilang"}),
        ("complete_task", {"milestone_id": first["id"], "task_id": invented}),
        ("complete_task", {"milestone_id": first["id"]}),
        ("complete_task", {"milestone_id": invented, "task_id": first["tasks"][0]["id"]}),
        ("delete_milestone", {"milestone_id": invented}),
        ("delete_milestone", {"milestone_id": first["id"], "confirm": "yes"}),
        ("delete_milestone", {"milestone_id": [first["id"]], "confirm": True}),
        ("create_milestone", {"title": "X", "tasks": []}),
        ("create_milestone", {"title": "X", "tasks": ["a"] * 11}),
        ("create_milestone", {"title": "X", "tasks": ["a"], "difficulty": 9}),
        ("create_milestone", {"title": "X", "tasks": ["a"], "difficulty": "3"}),
        ("create_milestone", {"title": "X", "tasks": "a"}),
        ("create_milestone", {"title": "X", "tasks": ["a"], "replaces_milestone_id": invented}),
        ("update_business_context", {"facts": "supplier"}),
        ("update_business_context", {"facts": {"x": {"nested": 1}}}),
        ("update_business_context", {"facts": {"x": [1, 2]}}),
        ("update_business_context", {"facts": {"nul": "a\u0000b"}}),
        ("update_business_context", '{"facts": {"x": NaN}}'),
    ]
    results, _ = await call_tools(ai_client, fake_llm, owner, *garbage)
    for (name, arguments), result in zip(garbage, results, strict=True):
        assert result["is_error"] is True, (name, arguments, result)
        assert result["output"].startswith("Error:"), result
        assert "Traceback" not in result["output"] and "sqlalchemy" not in result["output"]

    # Extra fields are ignored: they cannot set what the tool does not offer.
    sneaky = await call_tool(
        ai_client,
        fake_llm,
        owner,
        "update_milestone",
        {
            "milestone_id": first["id"],
            "status": "completed",
            "reward_points": 999_999,
            "difficulty": 5,
            "business_id": str(uuid.uuid4()),
        },
    )
    assert ok(sneaky)["updated"]["status"] == "pending"
    extra = await call_tool(
        ai_client, fake_llm, owner, "business_summary", {"points": 10**6, "level": "Sultan"}
    )
    assert ok(extra)["points"] == 0 and ok(extra)["level"] == "Pemula"

    after = (
        roadmap_state(await milestones(ai_client, owner)),
        await points(ai_client, owner),
        (await transactions(ai_client, owner))["total"],
        (await business(ai_client, owner))["ai_context"],
    )
    assert after == before
