"""The HttpOnly refresh-token cookie, one policy for the native API and the web client's.

Each API keeps its cookie under its own auth path, so the two never overwrite each other
and the browser sends a cookie only to the routes that read it. The cookie acts only for
pages of the API's own origin and of CORS_ORIGINS (`refuse_cookie_from_foreign_site`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request, Response

from app.core.config import Settings
from app.core.errors import PermissionDeniedError
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


# --- who may use the cookie -----------------------------------------------------------------

CROSS_SITE_REFUSAL = (
    "This request's Origin may not use the refresh cookie: call from an origin listed in "
    "CORS_ORIGINS, or send the refresh token in a JSON body"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(value: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or base URL; None for "null" and garbage."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host, port or _DEFAULT_PORTS[scheme]


def from_foreign_site(request: Request, settings: Settings) -> bool:
    """True when a browser sent this request from a page the API does not trust with its
    cookie: an `Origin` that is neither the API's own nor listed in CORS_ORIGINS (`*`
    names no one), or, without an Origin, `Sec-Fetch-Site: cross-site`.

    A request with neither header is not a browser's cross-site request (an API client,
    curl), and is allowed.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "").strip().lower() == "cross-site"
    theirs = _origin(origin)
    if theirs is None:
        return True
    own = _origin(str(request.base_url))
    allowed = {_origin(o) for o in settings.CORS_ORIGINS if o != "*"}
    return theirs != own and theirs not in allowed


def refuse_cookie_from_foreign_site(request: Request, settings: Settings) -> None:
    """403 when the refresh cookie would act for a page of another site (CSRF): such a
    page can post a form or text/plain, which needs no CORS preflight, and the browser
    attaches the cookie (with SameSite=None, or from a sibling origin of the same site)."""
    if from_foreign_site(request, settings):
        raise PermissionDeniedError(CROSS_SITE_REFUSAL)
