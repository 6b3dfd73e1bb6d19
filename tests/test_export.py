"""The CSV export of transactions.

- The same CSV as always for a small range: BOM, header, rows in time order, escaping.
- No cell reads as a formula in a spreadsheet, whichever list separator it splits on
  (`,` in English Excel, `;` in Indonesian, tab or `|` elsewhere).
- A large export streams from a real `telaten serve`: the first bytes reach the client
  while rows are still being read (a row recorded after the first chunk arrived is in
  the file), other users are served meanwhile, a user runs at most
  EXPORT_MAX_PARALLEL_PER_USER exports at once (429 with Retry-After beyond), and the
  places are free again once the streams end or their clients go away.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert

from app.core.config import Settings
from app.db.session import Database
from app.modules.business.service import BusinessService
from app.modules.finance.models import Transaction
from app.modules.finance.reports import FinanceReports, csv_chunks, safe_cell
from tests.helpers.accounts import API, Account
from tests.helpers.business import category_id, owner_with_business, record
from tests.helpers.databases import fresh_database_url
from tests.helpers.server import ServerProcess, clean_env

JAKARTA = ZoneInfo("Asia/Jakarta")
BOM = b"\xef\xbb\xbf"
HEADER = ["occurred_at", "type", "amount", "category", "note", "id"]
EXPORT = f"{API}/finance/transactions/export"

# What makes a spreadsheet read a cell as a formula, and where it starts a cell.
TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
SEPARATORS = (";", ",", "\t", "|")
# Skipped before a trigger: spaces (some readers trim them) and the quotes of a field.
PADDING = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c not in "\t\r\n") + '"'


def csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(BOM)
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


# --- the same CSV as before ---------------------------------------------------------------


async def test_small_export_is_the_same_csv(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    sales = await category_id(client, owner, "income", "Penjualan")
    r = await client.post(
        f"{API}/finance/categories",
        headers=owner.headers,
        json={"type": "expense", "name": 'Bahan "baku", segar'},
    )
    assert r.status_code == 201, r.text
    supplies = r.json()["id"]
    entries = [
        ("income", 25000, sales, "Kopi, susu", "2026-11-03T10:00:00"),
        ("expense", 7500, supplies, 'Kata "mantap"\nbaris kedua', "2026-11-03T10:00:00"),
        ("income", 1, sales, "Rp 25.000 — lunas ✓ 🍰", "2026-11-01T00:00:00"),
        ("income", 999, sales, "", "2026-11-30T23:59:59"),
        ("income", 5, sales, "di luar rentang", "2026-12-01T00:00:00"),
    ]
    created = []
    for kind, amount, category, note, at in entries:
        r = await record(
            client,
            owner,
            type=kind,
            amount=amount,
            category_id=category,
            note=note,
            occurred_at=at,
        )
        assert r.status_code == 201, r.text
        created.append(r.json())
    r = await client.get(
        EXPORT, headers=owner.headers, params={"start": "2026-11-01", "end": "2026-11-30"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == (
        'attachment; filename="telaten-transactions-2026-11-01-2026-11-30.csv"'
    )
    assert r.headers["x-export-truncated"] == "false"

    in_range = sorted(
        created[:4], key=lambda t: (datetime.fromisoformat(t["occurred_at"]), t["id"])
    )
    expected = io.StringIO()
    writer = csv.writer(expected)
    writer.writerow(HEADER)
    for t in in_range:
        writer.writerow(
            [
                datetime.fromisoformat(t["occurred_at"]).astimezone(JAKARTA).isoformat(),
                t["type"],
                t["amount"],
                t["category_name"],
                t["note"],
                t["id"],
            ]
        )
    assert r.content == BOM + expected.getvalue().encode()
    assert r.content.count(b"\r\n") == 5  # the header and four rows (one with a "\n" inside)


async def test_empty_range_is_the_header_alone(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    r = await client.get(
        EXPORT, headers=owner.headers, params={"start": "2030-01-01", "end": "2030-01-31"}
    )
    assert r.status_code == 200
    assert r.content == BOM + b"occurred_at,type,amount,category,note,id\r\n"
    assert r.headers["x-export-truncated"] == "false"


# --- formula guard ------------------------------------------------------------------------

# (note, what the export writes into its cell): a trigger at the start of a cell or after
# a character a spreadsheet may split the line on gets a quote before it; the rest of the
# text is left as it was.
GUARDED = [
    ("=1+1", "'=1+1"),
    ('x;=HYPERLINK("http://evil.example","klik")', 'x;\'=HYPERLINK("http://evil.example","klik")'),
    ("x; =1+1", "x; '=1+1"),
    ("x,+62 812", "x,'+62 812"),
    ("x|@SUM(A1)", "x|'@SUM(A1)"),
    ("x\t-1", "x\t'-1"),
    ("x;\t=1", "x;'\t'=1"),
    ("baris satu\n=1+1", "baris satu\n'=1+1"),
    ("baris\r\n@A1", "baris\r\n'@A1"),
    ('x;"=1"', 'x;"\'=1"'),
    ('x; " =1', "x; \" '=1"),
    ("x;\u3000=1", "x;\u3000'=1"),
    ("\uff1d1+1", "'\uff1d1+1"),
    ("x;\uff0b1", "x;'\uff0b1"),
    ("x|\uff0d1", "x|'\uff0d1"),
    ("\uff20user", "'\uff20user"),
    ("x;'=1", "x;'=1"),
    ("beli gula - 2kg", "beli gula - 2kg"),
    ("email@toko.id", "email@toko.id"),
    ("10+2 pcs, lunas", "10+2 pcs, lunas"),
    ("Rp 1.000 = murah", "Rp 1.000 = murah"),
    ("", ""),
]


@pytest.mark.parametrize(("note", "cell"), GUARDED)
def test_cells_are_guarded_readably(note: str, cell: str) -> None:
    assert safe_cell(note) == cell


def fields_seen(text: str) -> Iterator[tuple[str, str]]:
    """Every field a reader splitting on each separator sees: one that knows CSV quoting
    (as Excel does) and one that splits the lines blindly."""
    for sep in SEPARATORS:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=sep):
            for field in row:
                yield f"csv reader on {sep!r}", field
        for line in re.split(r"\r\n|[\r\n]", text):
            for field in line.split(sep):
                yield f"split on {sep!r}", field


def formula_cells(text: str) -> list[tuple[str, str]]:
    return [(how, f) for how, f in fields_seen(text) if f.lstrip(PADDING).startswith(TRIGGERS)]


def test_the_readers_of_this_test_see_formulas_in_unguarded_text() -> None:
    # The check below is only worth something if it finds what it looks for.
    assert formula_cells("a,b;=1\r\n") == [("csv reader on ';'", "=1"), ("split on ';'", "=1")]
    assert formula_cells('"x;""=1"""') != []
    assert formula_cells("a,b;'=1\r\nc|' @x\r\n") == []


async def test_no_reader_sees_a_formula_in_the_export(client: httpx.AsyncClient) -> None:
    owner = await owner_with_business(client)
    sales = await category_id(client, owner, "income", "Penjualan")
    r = await client.post(
        f"{API}/finance/categories",
        headers=owner.headers,
        json={"type": "income", "name": "Lain;=SUM(1)|@x"},
    )
    assert r.status_code == 201, r.text
    other = r.json()["id"]
    notes = [note for note, _ in GUARDED]
    for i, note in enumerate(notes):
        r = await record(
            client,
            owner,
            type="income",
            amount=1000 + i,
            category_id=other if i % 2 else sales,
            note=note,
            occurred_at=f"2026-10-01T10:{i:02d}:00",
        )
        assert r.status_code == 201, r.text
    r = await client.get(
        EXPORT, headers=owner.headers, params={"start": "2026-10-01", "end": "2026-10-01"}
    )
    assert r.status_code == 200
    text = r.content.decode("utf-8-sig")
    assert formula_cells(text) == []
    # Read as CSV (with commas), each note is still the owner's text, a quote added at most.
    rows = csv_rows(r.content)[1:]
    assert len(rows) == len(notes)
    for row, note in zip(rows, notes, strict=True):
        assert row[4].replace("'", "") == note.strip().replace("'", "")
        assert row[3].replace("'", "") in ("Penjualan", "Lain;=SUM(1)|@x")


# --- batches, counted truncation (the service on the suite's database) -------------------


async def insert_rows(
    database_url: str,
    business_id: str,
    category: str,
    count: int,
    first: datetime,
    *,
    note: str = "",
    per_minute: int = 3,
) -> None:
    """`count` transactions in bulk, `per_minute` of them at each minute from `first`
    (ties in time, as an import makes them, which the export orders by id)."""
    db = Database(Settings(_env_file=None, DATABASE_URL=database_url))
    try:
        async with db.engine.begin() as conn:
            for offset in range(0, count, 5000):
                await conn.execute(
                    insert(Transaction),
                    [
                        {
                            "id": uuid.uuid4(),
                            "business_id": uuid.UUID(business_id),
                            "type": "income",
                            "amount": 1000 + i,
                            "category_id": uuid.UUID(category),
                            "note": f"{note}{i}",
                            "occurred_at": first + timedelta(minutes=i // per_minute),
                            "created_at": first,
                        }
                        for i in range(offset, min(count, offset + 5000))
                    ],
                )
    finally:
        await db.dispose()


async def business_id(client: httpx.AsyncClient, owner: Account) -> str:
    r = await client.get(f"{API}/business/me", headers=owner.headers)
    return r.json()["id"]


async def test_batches_cover_every_row_once_and_truncation_is_counted_first(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await owner_with_business(client)
    sales = await category_id(client, owner, "income", "Penjualan")
    first = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)
    await insert_rows(
        app.state.context.settings.DATABASE_URL, await business_id(client, owner), sales, 61, first
    )
    sessions = app.state.context.db.sessionmaker
    for max_rows, truncated in ((61, False), (60, True), (7, True)):
        async with sessions() as session:
            business = await BusinessService(session).mine_or_404(uuid.UUID(owner.id))
            reports = FinanceReports(session)
            export = reports.csv_export(business, date(2026, 4, 1), date(2026, 4, 30), max_rows)
            export = await reports.count_export(export)
        assert export.truncated is truncated
        # Batches of 4 rows split the runs of three rows at the same minute.
        chunks = [c async for c in csv_chunks(sessions, export, batch_rows=4)]
        assert len(chunks) > 2
        rows = csv_rows(b"".join(chunks))
        assert rows[0] == HEADER
        notes = [int(r[4]) for r in rows[1:]]
        # Each row once, none skipped: the first max_rows in time order (rows at one
        # minute come in id order, so where the cap cuts a minute any of its rows may be in).
        expected = min(max_rows, 61)
        assert len(notes) == len(set(notes)) == expected
        whole = expected // 3 * 3
        assert set(range(whole)) <= set(notes) and max(notes) < whole + 3
        keys = [(r[0], r[5]) for r in rows[1:]]
        assert keys == sorted(keys)  # by time, then id


# --- a large export over a real server --------------------------------------------------

ROWS = 20_000
# ~300 bytes a row, ~6 MB an export: far more than the socket buffers between a client
# that stopped reading and the server, so a paused stream really is mid-way.
LONG_NOTE = "Catatan impor dari buku kas lama, " * 8
RANGE = {"start": "2026-03-01", "end": "2026-03-31"}
LAST_DAY = datetime(2026, 3, 31, 12, 0, tzinfo=JAKARTA)


@dataclass
class Served:
    process: ServerProcess
    database_url: str

    @property
    def base_url(self) -> str:
        return self.process.base_url


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """`telaten serve` with a small pool (PostgreSQL): a stream that kept a pooled
    connection while paused would starve the other requests."""
    workdir = tmp_path_factory.mktemp("export")
    async with fresh_database_url(workdir, "export") as url:
        env = clean_env(
            DATABASE_URL=url,
            DATA_DIR=str(workdir / "data"),
            BCRYPT_ROUNDS="4",
            MCP_CONFIG_PATH=str(workdir / "no-mcp.json"),
            LOG_LEVEL="WARNING",
            EXPORT_MAX_PARALLEL_PER_USER="2",
            DB_POOL_SIZE="2",
            DB_MAX_OVERFLOW="0",
        )
        process = ServerProcess(env, workdir)
        try:
            process.wait_ready(timeout=120)
            yield Served(process, url)
        finally:
            process.stop()


@dataclass
class Owner:
    account: Account
    business_id: str
    category_id: str

    @property
    def headers(self) -> dict[str, str]:
        return self.account.headers


async def owner_with_rows(served: Served, rows: int = ROWS) -> Owner:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=60) as c:
        account = await owner_with_business(c)
        owner = Owner(
            account,
            await business_id(c, account),
            await category_id(c, account, "income", "Penjualan"),
        )
    first = datetime(2026, 3, 2, tzinfo=UTC)
    await insert_rows(
        served.database_url, owner.business_id, owner.category_id, rows, first, note=LONG_NOTE
    )
    return owner


async def record_now(served: Served, owner: Owner, note: str) -> None:
    """A transaction on the range's last day, written straight into the database (not
    through the server, whose event loop the test must not depend on)."""
    db = Database(Settings(_env_file=None, DATABASE_URL=served.database_url))
    try:
        async with db.engine.begin() as conn:
            await conn.execute(
                insert(Transaction),
                [
                    {
                        "id": uuid.uuid4(),
                        "business_id": uuid.UUID(owner.business_id),
                        "type": "expense",
                        "amount": 4242,
                        "category_id": uuid.UUID(owner.category_id),
                        "note": note,
                        "occurred_at": LAST_DAY.astimezone(UTC),
                        "created_at": LAST_DAY.astimezone(UTC),
                    }
                ],
            )
    finally:
        await db.dispose()


class Download:
    """One export over its own connection, read chunk by chunk when the test says."""

    def __init__(self, stack: AsyncExitStack, base_url: str, owner: Owner) -> None:
        self.stack, self.base_url, self.owner = stack, base_url, owner
        self.body = b""

    async def open(self) -> httpx.Response:
        client = await self.stack.enter_async_context(
            httpx.AsyncClient(base_url=self.base_url, timeout=120)
        )
        self.response = await self.stack.enter_async_context(
            client.stream("GET", EXPORT, headers=self.owner.headers, params=RANGE)
        )
        self.chunks = self.response.aiter_raw()
        return self.response

    async def first_chunk(self) -> bytes:
        self.body += await anext(self.chunks)
        return self.body

    async def rest(self) -> list[list[str]]:
        async for chunk in self.chunks:
            self.body += chunk
        return csv_rows(self.body)


@pytest.mark.slow
async def test_large_export_streams_while_rows_are_read(served: Served) -> None:
    owner = await owner_with_rows(served)
    async with AsyncExitStack() as stack:
        download = Download(stack, served.base_url, owner)
        r = await download.open()
        assert r.status_code == 200
        assert r.headers["x-export-truncated"] == "false"
        first = await download.first_chunk()
        assert first.startswith(BOM + b"occurred_at,type,amount,category,note,id\r\n")
        # The client has its first bytes; the server has not read the last rows yet.
        await record_now(served, owner, "dicatat saat ekspor berjalan")
        rows = await download.rest()
    assert rows[0] == HEADER
    assert len(rows) == 1 + ROWS + 1
    assert rows[-1][4] == "dicatat saat ekspor berjalan"
    assert sorted(int(r[4].removeprefix(LONG_NOTE)) for r in rows[1:-1]) == list(range(ROWS))
    keys = [(r[0], r[5]) for r in rows[1:]]
    assert keys == sorted(keys)


@pytest.mark.slow
async def test_parallel_exports_capped_per_user_while_others_are_served(served: Served) -> None:
    a, b = await owner_with_rows(served), await owner_with_rows(served)
    async with httpx.AsyncClient(base_url=served.base_url, timeout=60) as c:
        bystander = await owner_with_business(c)
    async with AsyncExitStack() as stack:
        running = [Download(stack, served.base_url, owner) for owner in (a, a, b)]
        for download in running:
            assert (await download.open()).status_code == 200
            await download.first_chunk()
        # Three exports are mid-way (each has sent its first bytes and waits for its
        # client); meanwhile the others are served.
        async with httpx.AsyncClient(base_url=served.base_url, timeout=60) as c:
            assert (await c.get("/health")).status_code == 200
            me = await c.get(f"{API}/auth/me", headers=bystander.headers)
            assert me.status_code == 200, me.text
            listed = await c.get(f"{API}/finance/transactions", headers=bystander.headers)
            assert listed.status_code == 200, listed.text
            third = await c.get(EXPORT, headers=a.headers, params=RANGE)
            assert third.status_code == 429, third.text[:200]
            assert int(third.headers["retry-after"]) >= 1
            assert "export" in third.json()["detail"].lower()
            other = await c.get(EXPORT, headers=b.headers, params=RANGE)
            assert other.status_code == 200  # b's second export: b's own places
            assert len(csv_rows(other.content)) == 1 + ROWS
        await record_now(served, a, "baru dari a")
        await record_now(served, b, "baru dari b")
        finished = [await download.rest() for download in running]
    for rows, note in zip(finished, ("baru dari a", "baru dari a", "baru dari b"), strict=True):
        assert len(rows) == 1 + ROWS + 1
        assert rows[-1][4] == note  # recorded while the export ran: it was still reading

    # The streams have ended: a's places are free again, both of them at once.
    async with httpx.AsyncClient(base_url=served.base_url, timeout=120) as c:
        again = await asyncio.gather(
            *(c.get(EXPORT, headers=a.headers, params=RANGE) for _ in range(2))
        )
    assert [r.status_code for r in again] == [200, 200]


@pytest.mark.slow
async def test_a_burst_of_one_user_gets_its_places_and_hanging_up_frees_them(
    served: Served,
) -> None:
    owner = await owner_with_rows(served)
    async with AsyncExitStack() as stack:
        # Eight exports at once, none read beyond its headers: the two that got a place
        # keep it (each is stuck mid-way until its client reads), the others get 429.
        downloads = [Download(stack, served.base_url, owner) for _ in range(8)]
        answers = await asyncio.gather(*(d.open() for d in downloads))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200, 200] + [429] * 6, statuses
        for r in answers:
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
        for download, r in zip(downloads, answers, strict=True):
            if r.status_code == 200:
                await download.first_chunk()
    # All eight connections are closed now, two of them mid-stream. The server notices
    # and frees the places, well before a place would lapse by itself (30 s after its
    # last renewal): poll for at most 20 s.
    async with httpx.AsyncClient(base_url=served.base_url, timeout=60) as c:
        polled: list[int] = []
        for _ in range(80):
            r = await c.get(EXPORT, headers=owner.headers, params=RANGE)
            polled.append(r.status_code)
            if r.status_code == 200:
                break
            await asyncio.sleep(0.25)
    assert polled[-1] == 200, polled
    assert len(csv_rows(r.content)) == 1 + ROWS
