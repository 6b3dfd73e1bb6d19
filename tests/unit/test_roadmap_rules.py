"""The rules of a generated roadmap (app/modules/milestone/generation.py and plans.py):
its size, the checks on the model's draft, and the rewards of a new milestone."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.modules.milestone.generation import (
    FIRST_ROADMAP_SIZE,
    MAX_TASKS,
    MIN_TASKS,
    NEXT_ROADMAP_SIZE,
    roadmap_size,
    validate_draft,
)
from app.modules.milestone.models import GenerationKind
from app.modules.milestone.plans import (
    BONUS_POINTS_PER_LEVEL,
    TASK_POINTS_PER_LEVEL,
    MilestonePlan,
    new_milestone,
)


@pytest.mark.parametrize(
    ("kind", "completed", "size"),
    [
        (GenerationKind.INITIAL, 0, FIRST_ROADMAP_SIZE),
        (GenerationKind.INITIAL, 7, FIRST_ROADMAP_SIZE),
        (GenerationKind.NEXT, 0, FIRST_ROADMAP_SIZE),  # nothing done yet: a first roadmap
        (GenerationKind.NEXT, 3, NEXT_ROADMAP_SIZE),
        (GenerationKind.REQUESTED, 1, NEXT_ROADMAP_SIZE),
    ],
)
def test_roadmap_size(kind: str, completed: int, size: int) -> None:
    assert roadmap_size(kind, completed) == size


def milestone(tasks: int = MIN_TASKS, **overrides: Any) -> dict[str, Any]:
    return {
        "title": "Catat semua penjualan",
        "description": "Supaya tahu untung rugi.",
        "difficulty": 2,
        "tasks": [f"Langkah {i}" for i in range(tasks)],
        **overrides,
    }


def test_a_valid_draft_becomes_plans() -> None:
    plans = validate_draft({"milestones": [milestone() for _ in range(3)]}, 3)
    assert [p.difficulty for p in plans] == [2, 2, 2]
    assert plans[0].tasks == [f"Langkah {i}" for i in range(MIN_TASKS)]


@pytest.mark.parametrize(
    "milestones",
    [
        [milestone()] * 2,  # one too few
        [milestone()] * 4,  # one too many
        [milestone(), milestone(), milestone(tasks=MIN_TASKS - 1)],
        [milestone(), milestone(), milestone(tasks=MAX_TASKS + 1)],
        [milestone(), milestone(), milestone(difficulty=6)],
        [milestone(), milestone(), milestone(title="   ")],
        [milestone(), milestone(), milestone(title="x" * 201)],
    ],
)
def test_bad_drafts_say_what_is_wrong(milestones: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="milestones"):
        validate_draft({"milestones": milestones}, 3)


def test_only_a_generated_milestone_is_rewarded_by_its_difficulty() -> None:
    plan = MilestonePlan("Buka cabang", "", 4, ["a", "b"])
    business = uuid.uuid4()
    generated = new_milestone(business, plan, 0, generation_id=uuid.uuid4())
    own = new_milestone(business, plan, 0)
    assert generated.milestone.reward_points == 4 * BONUS_POINTS_PER_LEVEL
    assert [t.reward_points for t in generated.tasks] == [4 * TASK_POINTS_PER_LEVEL] * 2
    assert own.milestone.reward_points == BONUS_POINTS_PER_LEVEL  # the base rate
    assert [t.reward_points for t in own.tasks] == [TASK_POINTS_PER_LEVEL] * 2
    assert generated.milestone.ai_generated and not own.milestone.ai_generated
