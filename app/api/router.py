"""Every versioned route, mounted under `API_V1_STR` by `create_app`.

Domain modules add their routers here.
"""

from fastapi import APIRouter

api_router = APIRouter()
