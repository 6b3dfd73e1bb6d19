"""The application context: everything the app builds once, typed, in one place.

`create_app` builds one `AppContext` from the settings and keeps it on the app; routes
reach it only through `app/api/deps.py` (`ContextDep` and the providers built on it),
never through `app.state`. The lifespan starts and stops what in it runs (the database
pool, the MCP client sessions, the roadmap worker).
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_index.core.llms.function_calling import FunctionCallingLLM

from app.core.config import Settings
from app.core.llm import build_llm
from app.core.mcp import MCPManager
from app.core.security import PasswordHasher, TokenCodec
from app.db.session import Database
from app.modules.milestone.worker import RoadmapWorker


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    db: Database
    hasher: PasswordHasher
    tokens: TokenCodec
    llm: FunctionCallingLLM | None  # None without a configured model: AI routes answer 503
    mcp: MCPManager  # the external MCP servers' sessions
    roadmap_worker: RoadmapWorker | None  # None without a model: nothing is generated

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        db = Database(settings)
        llm = build_llm(settings)
        return cls(
            settings=settings,
            db=db,
            hasher=PasswordHasher(rounds=settings.BCRYPT_ROUNDS),
            tokens=TokenCodec.from_settings(settings),
            llm=llm,
            mcp=MCPManager.from_settings(settings),
            roadmap_worker=None if llm is None else RoadmapWorker(settings, db.sessionmaker, llm),
        )
