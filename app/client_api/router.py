"""Every call of the web client, mounted under `CLIENT_API_PREFIX` by `create_app`."""

from fastapi import APIRouter

from app.client_api import auth, business, chat, finance, gamification, milestones
from app.client_api.errors import ClientError

TAG = "web client"

client_router = APIRouter(
    tags=[TAG],
    responses={
        401: {"model": ClientError, "description": "Not authenticated"},
        422: {"model": ClientError, "description": "Invalid input"},
    },
)
for module in (auth, business, gamification, finance, milestones, chat):
    client_router.include_router(module.router)
