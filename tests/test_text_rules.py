"""Invisible, direction-changing and blank-looking characters in names and free text.

A name on the leaderboard must look like what it is: no zero-width or direction
characters, noncharacters, private-use or unassigned code points, and not blank
(Hangul fillers, the blank Braille pattern). Indonesian text, accents and emoji (with
skin tones, ZWJ sequences and flag tag sequences) stay accepted.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.core.types import drop_invisible, looks_blank, text_problem
from app.main import create_app
from tests.conftest import asgi_client, make_settings
from tests.helpers.accounts import API, new_account, register
from tests.helpers.databases import fresh_database_url

ZWJ = "\u200d"
SCOTLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"

# (text, why it must be refused in a one-line name)
REFUSED_IN_NAMES = [
    ("Warung\u200bSari", "ZERO WIDTH SPACE"),
    ("\ufeffWarung", "BYTE ORDER MARK"),
    ("Warung\u200eSari", "LEFT-TO-RIGHT MARK"),
    ("\u200fSari", "RIGHT-TO-LEFT MARK"),
    ("Bu\u202eiraS", "RIGHT-TO-LEFT OVERRIDE"),
    ("Bu\u2066Sari\u2069", "LEFT-TO-RIGHT ISOLATE"),
    ("Sa\u2060ri", "WORD JOINER"),
    ("Sa\u00adri", "SOFT HYPHEN"),
    ("Sa\u061cri", "ARABIC LETTER MARK"),
    ("Sa\u180eri", "MONGOLIAN VOWEL SEPARATOR"),
    ("Sari\U000e0041\U000e0042", "TAG characters (hidden text)"),
    ("Sari\U000e007f", "a CANCEL TAG on its own"),
    ("Sa\u200cri", "ZERO WIDTH NON-JOINER in a name"),
    ("Sa\u200dri", "ZWJ between letters joins nothing"),
    ("Sari\u200d", "a trailing ZWJ"),
    ("\u200d\U0001f600", "a leading ZWJ"),
    ("Warung\ufdd0", "noncharacter U+FDD0"),
    ("Warung\ufdef", "noncharacter U+FDEF"),
    ("Warung\ufffe", "noncharacter U+FFFE"),
    ("Warung\uffff", "noncharacter U+FFFF"),
    ("Warung\U0001fffe", "noncharacter U+1FFFE"),
    ("Warung\U0010ffff", "noncharacter U+10FFFF"),
    ("Warung\ue000", "private use"),
    ("Warung\U000f0000", "supplementary private use"),
    ("Warung\u0378", "unassigned"),
    ("Warung\U000e0080", "unassigned"),
    ("Bu\x85Sari", "NEXT LINE (C1 control)"),
    ("Bu\tSari", "tab"),
    ("Bu\u2028Sari", "LINE SEPARATOR"),
    ("Bu\x00Sari", "NUL"),
    ("\u3164Sari", "a HANGUL FILLER pads the name invisibly"),
    ("Sari\u2800\u2800", "BRAILLE PATTERN BLANK"),
    ("Sa\uffa0ri", "HALFWIDTH HANGUL FILLER"),
]

BLANK_LOOKING = [
    "\u3164",  # HANGUL FILLER
    "\u3164 \u3164",
    "\u115f\u1160",  # HANGUL CHOSEONG / JUNGSEONG FILLER
    "\uffa0",  # HALFWIDTH HANGUL FILLER
    "\u2800\u2800\u2800",  # BRAILLE PATTERN BLANK
    "\u3000\u3164",  # IDEOGRAPHIC SPACE + filler
    "\ufe0f",  # a variation selector with nothing to vary
    "\u034f",  # COMBINING GRAPHEME JOINER
    "\u17b4",  # KHMER VOWEL INHERENT AQ
]

ACCEPTED_NAMES = [
    "Warung Bu Sari",
    "Rumah Makan Padang Sederhana",
    "Toko Kelontong Pak Ahmad & Sons",
    "Kopi 99% Arabika",
    "Café Crème",
    "Cafe\u0301 (decomposed accent, made NFC)",
    "Ñandú Łódź Ærø Øster",
    "☕ Kopi Kenangan",
    "Warung 🍜",
    "🇮🇩 Batik Nusantara",  # regional indicators
    "👍🏽 Jempol",  # skin tone modifier
    f"👩🏽{ZWJ}💻 Digital",  # ZWJ sequence with a skin tone
    f"👨{ZWJ}👩{ZWJ}👧 Keluarga",
    f"🏳\ufe0f{ZWJ}🌈 Pelangi",  # variation selector, then ZWJ
    f"❤\ufe0f{ZWJ}🔥 Semangat",
    f"{SCOTLAND} Highland",  # a subdivision flag: tag characters in their sequence
    "🩷 Toko Merah Muda",  # an emoji newer than this Python's Unicode tables
    f"ශ්{ZWJ}රී Lanka",  # Sinhala: ZWJ after a virama (Indic conjunct)
    "ꦱꦫꦶ Aksara Jawa",  # Javanese script
    "مطعم 餐厅 ラーメン 한식당",
]

MULTILINE_ACCEPTED = [
    "Baris satu\nbaris dua\r\n\tdengan tab",
    "per\u00adsen",  # soft hyphen: shows only where the line breaks
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # ZWNJ shapes Persian words
    "a\u200db",  # ZWJ anywhere in free text
    "ikon \ue000 dari font",  # private use is harmless in free text
    "baris\u2028pemisah",
    f"{SCOTLAND} dan 👩🏽{ZWJ}💻",
]

MULTILINE_REFUSED = [
    "kata\u200bkata",
    "\ufeffteks",
    "a\u202eb",
    "a\u200eb",
    "perintah tersembunyi\U000e0069\U000e0067\U000e006e",  # tag text a model would read
    "a\ufdd0b",
    "a\ufffeb",
    "bel\x07",
    "a\x0bb",
]


@pytest.mark.parametrize(("text", "why"), REFUSED_IN_NAMES)
def test_one_line_refusals(text: str, why: str) -> None:
    assert text_problem(text, one_line=True), why


@pytest.mark.parametrize("text", BLANK_LOOKING)
def test_blank_looking(text: str) -> None:
    assert looks_blank(text)


@pytest.mark.parametrize("text", ACCEPTED_NAMES)
def test_names_accepted(text: str) -> None:
    assert text_problem(text, one_line=True) is None
    assert not looks_blank(text)


@pytest.mark.parametrize("text", MULTILINE_ACCEPTED)
def test_free_text_accepted(text: str) -> None:
    assert text_problem(text, one_line=False) is None


@pytest.mark.parametrize("text", MULTILINE_REFUSED)
def test_free_text_refused(text: str) -> None:
    assert text_problem(text, one_line=False)


@pytest.mark.parametrize(
    ("pasted", "kept"),
    [
        ("kata\u200bkata", "katakata"),
        ("\ufeffteks", "teks"),
        ("a\u200eb\u200f\u2060c", "abc"),
        ("perintah\U000e0069\U000e0067\U000e006e", "perintah"),
        (f"{SCOTLAND} menang", f"{SCOTLAND} menang"),  # a flag's tags stay
        ("a\u202eb", "a\u202eb"),  # direction overrides are refused, not removed
    ],
)
def test_free_text_drops_the_invisible_characters_it_may_drop(pasted: str, kept: str) -> None:
    assert drop_invisible(pasted) == kept


def test_the_message_names_the_character() -> None:
    problem = text_problem("Warung\u200bSari", one_line=True)
    assert problem and "U+200B" in problem and "invisible" in problem


# --- over HTTP --------------------------------------------------------------------------


async def test_register_and_profile_names(client: httpx.AsyncClient) -> None:
    for bad in ("Bu\u200bSari", "\u3164", "\u2800 \u2800", "Bu\u202eiraS", "Sari\ufdd0"):
        r = await register(client, name=bad)
        assert r.status_code == 422, (bad, r.text)
        assert "name" in str(r.json()["detail"][0]["loc"])
    r = await register(client, name="Bu\u200bSari")
    assert "U+200B" in r.json()["detail"][0]["msg"]
    r = await register(client, name="\u3164\u3164")
    assert "blank" in r.json()["detail"][0]["msg"]
    r = await register(client, name="\ufe0f\u0301")  # marks with nothing to mark
    assert r.status_code == 422 and "looks blank" in r.json()["detail"][0]["msg"]
    r = await register(client, name=f"Bu Sari 👩🏽{ZWJ}🍳")
    assert r.status_code == 201, r.text

    owner = await new_account(client)
    for bad in ("\u3164", "Ibu\u200eNur", "\ufeff", "Nur\U000e0041"):
        r = await client.patch(f"{API}/auth/me", headers=owner.headers, json={"name": bad})
        assert r.status_code == 422, (bad, r.text)
    good = "Ibu Ñandú Wulandari 🇮🇩"
    r = await client.patch(f"{API}/auth/me", headers=owner.headers, json={"name": good})
    assert r.status_code == 200 and r.json()["name"] == good


async def test_business_category_and_free_text(client: httpx.AsyncClient) -> None:
    owner = await new_account(client)
    for bad in ("Warung\u200bSari", "\u3164", "\u2800", "Toko\ue000", "Kopi\ufffe"):
        r = await client.post(
            f"{API}/business", headers=owner.headers, json={"name": bad, "category": "x"}
        )
        assert r.status_code == 422, (bad, r.text)
    r = await client.post(
        f"{API}/business",
        headers=owner.headers,
        json={"name": "Kopi\u200d", "category": "Minuman\u200b"},
    )
    assert r.status_code == 422 and len(r.json()["detail"]) == 2  # both fields named
    r = await client.post(
        f"{API}/business",
        headers=owner.headers,
        json={"name": "Warung 🍜", "category": "Kuliner", "description": "a\u202eb"},
    )
    assert r.status_code == 422, r.text
    r = await client.post(
        f"{API}/business",
        headers=owner.headers,
        json={
            "name": f"Dapur {SCOTLAND} 👩🏽{ZWJ}🍳",
            "category": "Kuliner",
            "description": "Masakan rumahan\nper\u00adsen",
        },
    )
    assert r.status_code == 201, r.text

    for bad in ("Bahan\u200bBaku", "\u3164", "Bahan\u2066Baku"):
        r = await client.post(
            f"{API}/finance/categories",
            headers=owner.headers,
            json={"type": "expense", "name": bad},
        )
        assert r.status_code == 422, (bad, r.text)
    r = await client.post(
        f"{API}/finance/categories",
        headers=owner.headers,
        json={"type": "expense", "name": "Bahan Baku 🥬"},
    )
    assert r.status_code == 201, r.text
    sales = next(
        c["id"]
        for c in (await client.get(f"{API}/finance/categories", headers=owner.headers)).json()
        if c["name"] == "Penjualan"
    )
    r = await client.post(
        f"{API}/finance/transactions",
        headers=owner.headers,
        json={"type": "income", "amount": 1000, "category_id": sales, "note": "lunas\u200b"},
    )
    # Invisible characters pasted into free text are removed, not refused: the owner
    # cannot see them to take them out.
    assert r.status_code == 201 and r.json()["note"] == "lunas", r.text
    r = await client.post(
        f"{API}/finance/transactions",
        headers=owner.headers,
        json={"type": "income", "amount": 1000, "category_id": sales, "note": "lunas\u202e"},
    )
    assert r.status_code == 422, r.text
    r = await client.post(
        f"{API}/milestones",
        headers=owner.headers,
        json={"title": "\u2800", "tasks": ["Tugas"]},
    )
    assert r.status_code == 422, r.text


async def test_leaderboard_shows_only_clean_names(tmp_path: Path) -> None:
    # A database of its own: on the suite's, other tests' businesses fill the top 100.
    async with fresh_database_url(tmp_path, "board") as url:
        application = create_app(make_settings(url, tmp_path / "data"))
        async with LifespanManager(application), asgi_client(application) as client:
            viewer = await new_account(client)
            tag = uuid.uuid4().hex[:6]
            clean = f"Warung {tag} 👨{ZWJ}👩{ZWJ}👧"
            for name in (f"Warung {tag}\u200b", f"\u3164{tag}", f"\u202e{tag}", clean):
                owner = await new_account(client)
                await client.post(
                    f"{API}/business", headers=owner.headers, json={"name": name, "category": "x"}
                )
            r = await client.get(
                f"{API}/gamification/leaderboard?limit=100", headers=viewer.headers
            )
            board = r.json()
    ours = [e["business_name"] for e in board["entries"] if tag in e["business_name"]]
    assert ours == [clean]
    for entry in board["entries"]:
        assert text_problem(entry["business_name"], one_line=True) is None, entry
        assert not looks_blank(entry["business_name"])
