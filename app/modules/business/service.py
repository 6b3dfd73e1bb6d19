"""Business profile rules: one per owner; owners never set points, level or badges."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.background import Worker
from app.core.errors import ConflictError, NotFoundError, UnprocessableError
from app.core.jsonlimits import cap_json_depth
from app.db.helpers import commit_or_conflict, flush_or_conflict
from app.db.types import utcnow
from app.modules.business.models import BusinessProfile
from app.modules.business.repository import BusinessRepository
from app.modules.business.schemas import BusinessCreate, BusinessUpdate, bounded_ai_context
from app.modules.gamification.service import GamificationService, Level
from app.modules.milestone.service import GenerationKind, request_roadmap

_REQUIRED = frozenset({"name", "category", "stage", "timezone", "ai_context"})
_TEXT = frozenset({"description", "target_market", "primary_goal"})

NO_PROFILE = "You have no business profile yet; create one with POST /business"
# The same, as the advisor and MCP clients read it from a tool.
NO_PROFILE_FOR_TOOLS = (
    "The owner has no business profile yet. Ask them to create it in the Telaten app "
    "first (name, category, stage)."
)
PROFILE_EXISTS = "You already have a business profile"


class BusinessService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = BusinessRepository(session)

    async def get(self, business_id: uuid.UUID) -> BusinessProfile | None:
        return await self.repo.get(business_id)

    async def mine(self, user_id: uuid.UUID) -> BusinessProfile | None:
        return await self.repo.by_user(user_id)

    async def mine_or_404(self, user_id: uuid.UUID, detail: str = NO_PROFILE) -> BusinessProfile:
        business = await self.repo.by_user(user_id)
        if business is None:
            raise NotFoundError(detail)
        return business

    async def create(
        self,
        user_id: uuid.UUID,
        data: BusinessCreate,
        *,
        roadmap_worker: Worker | None = None,
        stage_label: str | None = None,
    ) -> BusinessProfile:
        """Create the profile and, with a `roadmap_worker` (an LLM is configured), record the
        request for its first roadmap in the same transaction. `stage_label` is the
        owner's own word for the stage, kept until the stage changes."""
        if await self.repo.by_user(user_id) is not None:
            raise ConflictError(PROFILE_EXISTS)
        levels = await GamificationService(self.session).levels()
        business = BusinessProfile(
            user_id=user_id,
            **data.model_dump(exclude={"address"}),
            address=data.address.model_dump(exclude_none=True) if data.address else None,
            level_id=levels[0].id if levels else None,
            stage_label=stage_label,
        )
        self.session.add(business)
        if roadmap_worker is not None:
            await flush_or_conflict(self.session, PROFILE_EXISTS)  # a parallel create won
            await request_roadmap(self.session, business.id, GenerationKind.INITIAL)
        await commit_or_conflict(self.session, PROFILE_EXISTS)  # a parallel create won
        if roadmap_worker is not None:
            roadmap_worker.wake()
        return business

    async def update(self, user_id: uuid.UUID, data: BusinessUpdate) -> BusinessProfile:
        business = await self.mine_or_404(user_id)
        changes = data.model_dump(exclude_unset=True, exclude={"address"})
        for key, value in changes.items():
            if value is None:
                if key in _REQUIRED:
                    continue  # required fields cannot be cleared
                value = "" if key in _TEXT else None  # cleared text is empty, icon absent
            if key == "stage" and value != business.stage:
                business.stage_label = None  # the word was for the old stage
            if key == "timezone" and value != business.timezone:
                business.timezone_changed_at = utcnow()  # see gamification.cap_window_start
            setattr(business, key, value)
        if "address" in data.model_fields_set:
            business.address = data.address.model_dump(exclude_none=True) if data.address else None
        business.updated_at = utcnow()
        await self.session.commit()
        return business

    async def merge_ai_context(self, user_id: uuid.UUID, facts: dict[str, Any]) -> BusinessProfile:
        """Add or replace facts in the advisor's memory (a None value removes a fact)."""
        business = await self.mine_or_404(user_id)
        # A memory stored over-deep by an older version is cut down now, not kept failing.
        context = dict(cap_json_depth(business.ai_context or {}))
        for key, value in facts.items():
            if value is None:
                context.pop(key, None)
            else:
                context[key] = value
        try:
            business.ai_context = bounded_ai_context(context)
        except ValueError as exc:
            raise UnprocessableError(
                f"The advisor's memory of the business {exc}; remove facts first"
            ) from None
        business.updated_at = utcnow()
        await self.session.commit()
        return business

    async def level_of(self, business: BusinessProfile) -> Level | None:
        if business.level_id is None:
            return None
        return await GamificationService(self.session).level(business.level_id)


async def callers_business(session: AsyncSession, user_id: uuid.UUID) -> BusinessProfile:
    """The business a tool acts on, the caller's; a refusal the model can read if there
    is none yet."""
    return await BusinessService(session).mine_or_404(user_id, NO_PROFILE_FOR_TOOLS)
