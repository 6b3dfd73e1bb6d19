"""The level ladder's rule (app/modules/gamification/ladder.py: `check_ladder`)."""

from __future__ import annotations

import pytest

from app.core.errors import ConflictError
from app.modules.gamification.ladder import check_ladder
from app.modules.gamification.models import Level


def ladder(*steps: tuple[int, int]) -> list[Level]:
    """Levels from (order, required points)."""
    return [Level(name=f"L{order}", order=order, required_points=points) for order, points in steps]


@pytest.mark.parametrize(
    "steps",
    [
        [(1, 0)],
        [(1, 0), (2, 100), (3, 300)],
        [(3, 300), (1, 0), (2, 100)],  # checked in order, not as listed
        [(1, 0), (5, 1), (9, 10**12)],  # gaps in the order are fine
    ],
)
def test_good_ladders(steps: list[tuple[int, int]]) -> None:
    check_ladder(ladder(*steps))


@pytest.mark.parametrize(
    ("steps", "why"),
    [
        ([], "At least one level must remain"),
        ([(1, 10), (2, 100)], "must require 0 points"),
        ([(1, 0), (2, 100), (3, 100)], "must increase"),
        ([(1, 0), (2, 300), (3, 100)], "must increase"),
        ([(2, 0), (1, 50)], "must require 0 points"),  # the lowest order needs 0
    ],
)
def test_bad_ladders_are_409(steps: list[tuple[int, int]], why: str) -> None:
    with pytest.raises(ConflictError) as refused:
        check_ladder(ladder(*steps))
    assert why in str(refused.value.detail)
