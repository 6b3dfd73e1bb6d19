"""`/auth`: register, login, token (OAuth2 form), refresh, logout, me, password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Cookie, Depends, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import ValidationError

from app.api.deps import AuthServiceDep, CurrentUser, SettingsDep, client_address
from app.core.config import Settings
from app.core.errors import UNPROCESSABLE_RESPONSE, Responses
from app.modules.auth.cookies import (
    CROSS_SITE_REFUSAL,
    delete_refresh_cookie,
    refuse_cookie_from_foreign_site,
    set_refresh_cookie,
)
from app.modules.auth.schemas import (
    LoginRequest,
    MeUpdated,
    PasswordChange,
    RefreshRequest,
    TokenResponse,
)
from app.modules.auth.service import TokenPair
from app.modules.users.schemas import UserPublic, UserRegister, UserUpdateMe

router = APIRouter(prefix="/auth", tags=["auth"])

_401: Responses = {401: {"description": "Missing, invalid or expired credentials"}}


def _cookie_path(settings: Settings) -> str:
    return f"{settings.API_V1_STR}/auth"


def _token_response(pair: TokenPair, response: Response, settings: Settings) -> TokenResponse:
    """Body for API clients, HttpOnly cookie (limited to the auth routes) for browsers."""
    set_refresh_cookie(response, pair.refresh, settings, _cookie_path(settings))
    return TokenResponse(
        access_token=pair.access.token,
        expires_in=pair.access.expires_in,
        refresh_token=pair.refresh.token,
        refresh_expires_in=pair.refresh.expires_in,
    )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses={
        409: {"description": "Email already registered"},
        429: {"description": "Too many accounts from this address"},
    },
)
async def register(data: UserRegister, request: Request, auth: AuthServiceDep) -> UserPublic:
    return UserPublic.model_validate(await auth.register(data, client_address(request)))


_LOGIN_ERRORS: Responses = {
    **_401,
    403: {"description": "Account deactivated"},
    429: {"description": "Throttled"},
}


@router.post("/login", response_model=TokenResponse, responses=_LOGIN_ERRORS)
async def login(
    data: LoginRequest,
    request: Request,
    response: Response,
    auth: AuthServiceDep,
    settings: SettingsDep,
) -> TokenResponse:
    pair = await auth.login(data.email, data.password, client_address(request))
    return _token_response(pair, response, settings)


@router.post("/token", response_model=TokenResponse, responses=_LOGIN_ERRORS)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
    auth: AuthServiceDep,
    settings: SettingsDep,
) -> TokenResponse:
    """OAuth2 password flow (`username` is the email), for Swagger's Authorize button."""
    try:
        data = LoginRequest(email=form.username, password=form.password)
    except ValidationError as exc:
        # The same 422 as a bad JSON login, located in the form, without the values.
        errors = exc.errors(include_input=False, include_url=False)
        field_of = {"email": "username", "password": "password"}
        raise RequestValidationError(
            [{**e, "loc": ("body", field_of.get(str(e["loc"][0]), e["loc"][0]))} for e in errors]
        ) from None
    pair = await auth.login(data.email, data.password, client_address(request))
    return _token_response(pair, response, settings)


def _is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def _no_simple_posts_from_foreign_sites(request: Request, settings: SettingsDep) -> None:
    """A page of another site can post a form or text/plain without a CORS preflight;
    such a body carries no token here, so only the browser's cookie would act: 403,
    before the body is even read. JSON bodies go on (a token in them is allowed from any
    origin; without one, the route refuses the cookie the same way)."""
    if not _is_json(request):
        refuse_cookie_from_foreign_site(request, settings)


_COOKIE_GUARD = [Depends(_no_simple_posts_from_foreign_sites)]
_403_FOREIGN: Responses = {403: {"description": CROSS_SITE_REFUSAL}}


def _presented(
    request: Request, settings: Settings, body: RefreshRequest | None, cookie: str | None
) -> str | None:
    """The refresh token of the JSON body, else the cookie's, which acts only for the
    API's own origin and CORS_ORIGINS."""
    if body is not None and body.refresh_token:
        return body.refresh_token
    if cookie:
        refuse_cookie_from_foreign_site(request, settings)
    return cookie


@router.post(
    "/refresh",
    response_model=TokenResponse,
    responses={**_401, **_403_FOREIGN},
    dependencies=_COOKIE_GUARD,
)
async def refresh(
    request: Request,
    response: Response,
    auth: AuthServiceDep,
    settings: SettingsDep,
    body: Annotated[RefreshRequest | None, Body()] = None,
    refresh_token: Annotated[str | None, Cookie(max_length=4096)] = None,
) -> TokenResponse:
    """Rotate a refresh token (from the JSON body, else the cookie) into a new pair."""
    pair = await auth.refresh(_presented(request, settings, body, refresh_token))
    return _token_response(pair, response, settings)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_403_FOREIGN,
    dependencies=_COOKIE_GUARD,
)
async def logout(
    request: Request,
    response: Response,
    auth: AuthServiceDep,
    settings: SettingsDep,
    body: Annotated[RefreshRequest | None, Body()] = None,
    refresh_token: Annotated[str | None, Cookie(max_length=4096)] = None,
) -> Response:
    """Revoke the refresh token's family and clear the cookie. 204, unless the cookie is
    presented from another site's page (403)."""
    await auth.logout(_presented(request, settings, body, refresh_token))
    response.status_code = status.HTTP_204_NO_CONTENT
    delete_refresh_cookie(response, settings, _cookie_path(settings))
    return response


@router.get("/me", response_model=UserPublic, responses=_401)
async def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.patch(
    "/me",
    response_model=MeUpdated,
    responses={
        **_401,
        400: {"description": "Current password is incorrect"},
        409: {"description": "The new email address cannot be used"},
        **UNPROCESSABLE_RESPONSE,
        429: {"description": "Too many email changes, or wrong current passwords"},
    },
)
async def update_me(
    data: UserUpdateMe,
    user: CurrentUser,
    request: Request,
    response: Response,
    auth: AuthServiceDep,
    settings: SettingsDep,
) -> MeUpdated:
    """Change the name and/or the login email.

    A new email needs `current_password`, and ends every session, this one included: the
    answer then carries a fresh pair in `tokens` (and sets the refresh cookie, like
    login). `tokens` is null when the email did not change.
    """
    updated, pair = await auth.update_me(user, data, client_address(request))
    tokens = _token_response(pair, response, settings) if pair else None
    return MeUpdated(**UserPublic.model_validate(updated).model_dump(), tokens=tokens)


@router.post(
    "/me/password",
    response_model=TokenResponse,
    responses={
        **_401,
        400: {"description": "Current password is incorrect"},
        429: {"description": "Too many wrong current passwords"},
    },
)
async def change_password(
    data: PasswordChange,
    user: CurrentUser,
    response: Response,
    auth: AuthServiceDep,
    settings: SettingsDep,
) -> TokenResponse:
    """Change the password. Every existing session ends; the new tokens start a fresh one."""
    pair = await auth.change_password(user, data.current_password, data.new_password)
    return _token_response(pair, response, settings)
