"""The rows every database starts with: the level ladder, the achievement catalogue and
the default finance categories, defined here once.

The migrations that insert them read them from here (`0004_business` the rows with the
icons they first had, `0006_web_client` the emoji that replaced those), and so do the
tests. A database already migrated got them from those migrations, so changing a value
here changes nothing there: change seeded rows with a new migration that updates them
(and record what it replaces in that migration), then change them here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

# Default categories have fixed ids, the same in every database.
CATEGORY_NAMESPACE = uuid.UUID("6f0c1e2a-3b4d-4c5e-8f70-112233445566")


@dataclass(frozen=True)
class SeedLevel:
    name: str
    required_points: int
    order: int
    first_icon: str  # the word 0004_business stored
    icon: str  # the emoji 0006_web_client put in its place


@dataclass(frozen=True)
class SeedAchievement:
    code: str
    title: str
    description: str
    required_points: int | None
    rule: str | None
    first_icon: str
    icon: str


@dataclass(frozen=True)
class SeedCategory:
    type: str
    name: str
    icon: str  # set by 0006_web_client (0004_business stored none)

    @property
    def id(self) -> uuid.UUID:
        return uuid.uuid5(CATEGORY_NAMESPACE, f"{self.type}:{self.name}")


LEVELS = (
    SeedLevel("Pemula", 0, 1, "seedling", "🌱"),
    SeedLevel("Tekun", 100, 2, "sprout", "🌿"),
    SeedLevel("Terampil", 300, 3, "leaf", "🍃"),
    SeedLevel("Mahir", 700, 4, "tree", "🌳"),
    SeedLevel("Juragan", 1500, 5, "store", "🏪"),
    SeedLevel("Sultan", 3000, 6, "crown", "👑"),
)

ACHIEVEMENTS = (
    SeedAchievement(
        "first_transaction",
        "Catatan Pertama",
        "Mencatat transaksi pertama.",
        None,
        "first_transaction",
        "pencil",
        "✏️",
    ),
    SeedAchievement(
        "transactions_50",
        "Rajin Mencatat",
        "Mencatat 50 transaksi.",
        None,
        "transactions_50",
        "book",
        "📖",
    ),
    SeedAchievement(
        "first_milestone",
        "Langkah Nyata",
        "Menyelesaikan milestone pertama.",
        None,
        "first_milestone_completed",
        "flag",
        "🚩",
    ),
    SeedAchievement(
        "points_100", "Seratus Poin", "Mengumpulkan 100 poin.", 100, None, "star", "⭐"
    ),
    SeedAchievement(
        "points_500", "Lima Ratus Poin", "Mengumpulkan 500 poin.", 500, None, "stars", "🌟"
    ),
    SeedAchievement(
        "points_1000", "Seribu Poin", "Mengumpulkan 1.000 poin.", 1000, None, "trophy", "🏆"
    ),
)

CATEGORIES = (
    SeedCategory("income", "Penjualan", "🛍️"),
    SeedCategory("income", "Jasa", "🛠️"),
    SeedCategory("income", "Modal Masuk", "💰"),
    SeedCategory("income", "Lainnya", "💵"),
    SeedCategory("expense", "Bahan Baku", "📦"),
    SeedCategory("expense", "Gaji", "👥"),
    SeedCategory("expense", "Sewa", "🏠"),
    SeedCategory("expense", "Listrik & Air", "💡"),
    SeedCategory("expense", "Transportasi", "🚚"),
    SeedCategory("expense", "Pemasaran", "📣"),
    SeedCategory("expense", "Peralatan", "🔧"),
    SeedCategory("expense", "Lainnya", "🧾"),
)
