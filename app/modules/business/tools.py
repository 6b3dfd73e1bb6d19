"""The advisor's business tools: the profile's standing, and the advisor's memory."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from app.core.tools import NoParams, ToolContext, ToolSpec
from app.core.types import MultiLine, SingleLine
from app.modules.business.service import BusinessService, callers_business
from app.modules.gamification.service import GamificationService
from app.modules.milestone.service import MilestoneService

MAX_FACTS_PER_CALL = 20

FactValue = Annotated[
    Annotated[str, MultiLine(500)] | int | float | bool | None,
    Field(description="null removes the fact"),
]


async def business_summary(ctx: ToolContext, _: NoParams) -> dict[str, Any]:
    async with ctx.session() as session:
        business = await callers_business(session, ctx.user_id)
        stats = await GamificationService(session).stats(business, recent=0)
        milestones = MilestoneService.for_settings(session, ctx.settings, ctx.roadmap_worker)
        active = await milestones.active_count(business)
    level, upcoming = stats.level, stats.next_level
    return {
        "name": business.name,
        "category": business.category,
        "stage": business.stage,
        "points": business.total_points,
        "level": level.name if level else None,
        "next_level": upcoming.name if upcoming else None,
        "points_to_next_level": stats.points_to_next_level,
        "achievements": [p.achievement.title for p in stats.unlocked],
        "active_milestones": active,
    }


class ContextParams(BaseModel):
    facts: dict[Annotated[str, SingleLine(60)], FactValue] = Field(
        min_length=1,
        max_length=MAX_FACTS_PER_CALL,
        description='Facts to remember, e.g. {"supplier": "Pasar Induk", "employees": 3}',
    )


async def update_business_context(ctx: ToolContext, p: ContextParams) -> dict[str, Any]:
    async with ctx.session() as session:
        business = await BusinessService(session).merge_ai_context(ctx.user_id, p.facts)
    return {
        "remembered": sorted(k for k, v in p.facts.items() if v is not None),
        "forgotten": sorted(k for k, v in p.facts.items() if v is None),
        "facts_total": len(business.ai_context),
    }


TOOLS = [
    ToolSpec(
        "business_summary",
        "The owner's business at a glance: points, level, next level, achievements and "
        "how many milestones are active.",
        NoParams,
        business_summary,
        read_only=True,
    ),
    ToolSpec(
        "update_business_context",
        "Remember durable facts about the business (suppliers, prices, staff, goals, "
        "constraints) for future conversations. Use it quietly whenever the owner shares "
        "such a fact; there is no need to mention it.",
        ContextParams,
        update_business_context,
    ),
]
