"""Reka's system prompt."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
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
pengguna. Jika sebuah alat gagal, jelaskan singkat dan tawarkan jalan lain.
Aturan:
- Catat pemasukan/pengeluaran dengan record_transaction bila pengguna menyebutkannya.
- Jangan membuat milestone baru selama masih ada milestone aktif, kecuali pengguna
  meminta mengganti salah satunya (replaces_milestone_id).
- Hapus milestone hanya setelah pengguna mengonfirmasi dengan jelas: panggil
  delete_milestone dengan confirm=false dulu, tanyakan, lalu confirm=true setelah ia setuju.
- Bila pengguna menyebut fakta penting yang tahan lama tentang usahanya, simpan diam-diam
  dengan update_business_context tanpa perlu mengumumkannya."""


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


def describe_business(business: Any | None) -> str | None:
    """The business profile and the advisor's memory of it, for the system prompt."""
    if business is None:
        return None
    lines = [
        f"Nama usaha: {business.name} ({business.category}), tahap: {business.stage}.",
    ]
    if business.description:
        lines.append(f"Deskripsi: {business.description}")
    if business.target_market:
        lines.append(f"Target pasar: {business.target_market}")
    if business.primary_goal:
        lines.append(f"Tujuan utama: {business.primary_goal}")
    if business.address:
        place = ", ".join(str(v) for k, v in business.address.items() if v and k != "street")
        if place:
            lines.append(f"Lokasi: {place}")
    lines.append(f"Poin: {business.total_points}.")
    if business.ai_context:
        memory = json.dumps(business.ai_context, ensure_ascii=False)[:4000]
        lines.append(f"Catatan Reka tentang usaha ini (memori jangka panjang): {memory}")
    return "\n".join(lines)
