"""The HttpOnly refresh-token cookie, one policy for the native API and the web client's.

Each API keeps its cookie under its own auth path, so the two never overwrite each other
and the browser sends a cookie only to the routes that read it.
"""

from __future__ import annotations

from fastapi import Response

from app.core.config import Settings
from app.core.security import IssuedToken

REFRESH_COOKIE = "refresh_token"


def set_refresh_cookie(
    response: Response, refresh: IssuedToken, settings: Settings, path: str
) -> None:
    response.set_cookie(
        REFRESH_COOKIE,
        refresh.token,
        max_age=refresh.expires_in,
        path=path,
        httponly=True,
        secure=settings.refresh_cookie_secure,
        samesite=settings.REFRESH_COOKIE_SAMESITE,
    )
    response.headers["Cache-Control"] = "no-store"


def delete_refresh_cookie(response: Response, settings: Settings, path: str) -> None:
    response.delete_cookie(
        REFRESH_COOKIE,
        path=path,
        httponly=True,
        secure=settings.refresh_cookie_secure,
        samesite=settings.REFRESH_COOKIE_SAMESITE,
    )
