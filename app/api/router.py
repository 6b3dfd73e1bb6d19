"""Every versioned route, mounted under `API_V1_STR` by `create_app`.

Domain modules add their routers here.
"""

from fastapi import APIRouter

from app.api.mcp_admin import router as mcp_admin_router
from app.modules.auth.routes import router as auth_router
from app.modules.business.routes import router as business_router
from app.modules.chat.routes import admin_router as chat_admin_router
from app.modules.chat.routes import router as chat_router
from app.modules.finance.routes import router as finance_router
from app.modules.gamification.routes import admin_router as gamification_admin_router
from app.modules.gamification.routes import router as gamification_router
from app.modules.milestone.routes import router as milestone_router
from app.modules.users.routes import router as admin_users_router

api_router = APIRouter()
api_router.include_router(auth_router)
api_router.include_router(admin_users_router)
api_router.include_router(chat_router)
api_router.include_router(chat_admin_router)
api_router.include_router(mcp_admin_router)
api_router.include_router(business_router)
api_router.include_router(finance_router)
api_router.include_router(milestone_router)
api_router.include_router(gamification_router)
api_router.include_router(gamification_admin_router)
