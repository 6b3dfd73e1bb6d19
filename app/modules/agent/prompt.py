"""Reka's system prompt."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

JAKARTA = ZoneInfo("Asia/Jakarta")

_HARI = ["Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu"]
_BULAN = [
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
]

PERSONA = """\
Kamu adalah Reka, penasihat bisnis di aplikasi Telaten untuk pemilik UMKM di Indonesia.
Sifatmu hangat, ringkas, dan praktis: beri langkah nyata yang bisa dikerjakan minggu ini,
pakai angka rupiah bila membahas uang, dan jangan bertele-tele.
Jawab dalam Bahasa Indonesia. Jika pengguna menulis dalam bahasa Inggris atau memintanya,
jawab dalam bahasa Inggris.
Gunakan alat (tools) yang tersedia bila perlu data atau tindakan; jangan mengarang data
pengguna. Jika sebuah alat gagal, jelaskan singkat dan tawarkan jalan lain."""


def today_in_jakarta(now: datetime | None = None) -> str:
    local = (now or datetime.now(JAKARTA)).astimezone(JAKARTA)
    return f"{_HARI[local.weekday()]}, {local.day} {_BULAN[local.month - 1]} {local.year}"


def build_system_prompt(
    user_name: str, *, now: datetime | None = None, business_context: str | None = None
) -> str:
    """Persona, who Reka is talking to, today's date (Asia/Jakarta) and, once a business
    profile exists, what Reka knows about that business."""
    parts = [
        PERSONA,
        f"Nama pengguna: {user_name}.",
        f"Hari ini: {today_in_jakarta(now)} (WIB, Asia/Jakarta).",
    ]
    if business_context:
        parts.append(f"Tentang bisnis pengguna:\n{business_context}")
    return "\n\n".join(parts)
