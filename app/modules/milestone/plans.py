"""What a milestone is made from and how services hand one out: a `MilestonePlan` (from
the owner, the advisor or a generated roadmap), a `MilestoneView` (a milestone with its
tasks), and the rule that sets a new milestone's rewards (`new_milestone`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from app.modules.milestone.models import Milestone, MilestoneTask

TASK_POINTS_PER_LEVEL = 5
BONUS_POINTS_PER_LEVEL = 20


@dataclass(frozen=True)
class MilestoneView:
    milestone: Milestone
    tasks: list[MilestoneTask]


@dataclass(frozen=True)
class MilestonePlan:
    """A milestone to save, from the owner, the advisor or a generated roadmap."""

    title: str
    description: str
    difficulty: int
    tasks: Sequence[str]


def new_milestone(
    business_id: uuid.UUID,
    plan: MilestonePlan,
    position: int,
    *,
    generation_id: uuid.UUID | None = None,
) -> MilestoneView:
    """The rows of a new milestone (not yet added to a session). Only a generated
    roadmap's difficulty sets the rewards; a self-made milestone's difficulty is the
    owner's own claim, so it earns the base rate."""
    rate = plan.difficulty if generation_id is not None else 1
    milestone = Milestone(
        business_id=business_id,
        title=plan.title,
        description=plan.description,
        position=position,
        difficulty=plan.difficulty,
        reward_points=BONUS_POINTS_PER_LEVEL * rate,
        ai_generated=generation_id is not None,
        generation_id=generation_id,
    )
    tasks = [
        MilestoneTask(
            milestone_id=milestone.id,
            title=title,
            position=i,
            reward_points=TASK_POINTS_PER_LEVEL * rate,
        )
        for i, title in enumerate(plan.tasks)
    ]
    return MilestoneView(milestone, tasks)
