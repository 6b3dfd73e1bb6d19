"""Auth calls of the web client (#1-#5): the same accounts, tokens and rules as `/auth`.

What differs is the client's: the login answer carries the user, and bad credentials are
a 400 (a 401 would make the client renew with a leftover cookie and sign the browser in
as its previous owner); the refresh token travels only in the cookie, kept at
`<prefix>/auth`; a cookie rotated a moment ago by another tab still renews. The cookie
acts only for the client's origin (CORS_ORIGINS) and the API's own: a page of another
site cannot renew or end the session (403).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Cookie, Depends, Request, Response, status
from pydantic import BaseModel

from app.api.deps import (
    AuthServiceDep,
    CurrentUser,
    SessionDep,
    SettingsDep,
    UserServiceDep,
    client_address,
)
from app.client_api.errors import ClientError
from app.client_api.views import ClientUser, user_view
from app.core.config import Settings
from app.core.errors import DomainError, Responses, UnauthorizedError
from app.modules.auth.cookies import (
    CROSS_SITE_REFUSAL,
    delete_refresh_cookie,
    refuse_cookie_from_foreign_site,
    set_refresh_cookie,
)
from app.modules.auth.schemas import LoginRequest, TokenString
from app.modules.auth.service import BAD_CREDENTIALS, TokenPair
from app.modules.users.schemas import UserPublic, UserRegister

router = APIRouter(prefix="/auth")

RefreshCookie = Annotated[TokenString | None, Cookie(alias="refresh_token")]
# Logout takes whatever the browser holds: a cookie that is no token is still deleted.
AnyCookie = Annotated[str | None, Cookie(alias="refresh_token")]


class ClientToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


class ClientLogin(ClientToken):
    user: ClientUser


async def _cookie_from_trusted_pages(request: Request, settings: SettingsDep) -> None:
    """Both routes act on the cookie alone: refuse it to other sites' pages first."""
    refuse_cookie_from_foreign_site(request, settings)


_COOKIE_GUARD = [Depends(_cookie_from_trusted_pages)]
_403_FOREIGN: Responses = {403: {"model": ClientError, "description": CROSS_SITE_REFUSAL}}


def _cookie_path(settings: Settings) -> str:
    return f"{settings.CLIENT_API_PREFIX}/auth"


def _token(pair: TokenPair, response: Response, settings: Settings) -> ClientToken:
    """The access token in the body; the refresh token only in the HttpOnly cookie."""
    set_refresh_cookie(response, pair.refresh, settings, _cookie_path(settings))
    return ClientToken(access_token=pair.access.token, expires_in=pair.access.expires_in)


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses={
        409: {"model": ClientError, "description": "Email already registered"},
        429: {"model": ClientError, "description": "Too many accounts from this address"},
    },
)
async def client_register(data: UserRegister, request: Request, auth: AuthServiceDep) -> UserPublic:
    return UserPublic.model_validate(await auth.register(data, client_address(request)))


@router.post(
    "/login",
    response_model=ClientLogin,
    responses={
        400: {"model": ClientError, "description": "Wrong email or password"},
        403: {"model": ClientError, "description": "Account deactivated"},
        429: {"model": ClientError, "description": "Throttled"},
    },
)
async def client_login(
    data: LoginRequest,
    request: Request,
    response: Response,
    auth: AuthServiceDep,
    users: UserServiceDep,
    session: SessionDep,
    settings: SettingsDep,
) -> ClientLogin:
    try:
        pair = await auth.login(data.email, data.password, client_address(request))
    except UnauthorizedError:
        raise DomainError(BAD_CREDENTIALS, status_code=400) from None
    user = await users.get(pair.user_id)
    if user is None:  # deleted since, a moment ago
        raise DomainError(BAD_CREDENTIALS, status_code=400)
    token = _token(pair, response, settings)
    return ClientLogin(**token.model_dump(), user=await user_view(session, user))


@router.post(
    "/refresh",
    response_model=ClientToken,
    responses={
        401: {"model": ClientError, "description": "No valid refresh cookie"},
        **_403_FOREIGN,
    },
    dependencies=_COOKIE_GUARD,
)
async def client_refresh(
    response: Response,
    auth: AuthServiceDep,
    settings: SettingsDep,
    refresh_token: RefreshCookie = None,
) -> ClientToken:
    """Rotate the cookie's refresh token. No body; the Bearer header is not looked at."""
    grace = timedelta(seconds=settings.CLIENT_REFRESH_GRACE_SECONDS)
    pair = await auth.refresh(refresh_token, reuse_grace=grace)
    return _token(pair, response, settings)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_403_FOREIGN,
    dependencies=_COOKIE_GUARD,
)
async def client_logout(
    response: Response,
    auth: AuthServiceDep,
    settings: SettingsDep,
    refresh_token: AnyCookie = None,
) -> Response:
    """Revoke the cookie's token family and delete the cookie; no Bearer needed."""
    await auth.logout(refresh_token)
    response.status_code = status.HTTP_204_NO_CONTENT
    delete_refresh_cookie(response, settings, _cookie_path(settings))
    return response


@router.get("/me", response_model=ClientUser)
async def client_me(user: CurrentUser, session: SessionDep) -> ClientUser:
    """Always 200 for a signed-in user, with `business: null` until there is one."""
    return await user_view(session, user)
