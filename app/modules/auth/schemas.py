"""Request and response shapes for authentication."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, StringConstraints

from app.core.types import no_unsafe_chars
from app.modules.users.schemas import (
    AnyPassword,
    NewPassword,
    StrictModel,
    UserPublic,
    normalize_login_email,
)

# Login takes any address-like string: an unknown or malformed address is just a failed
# login (401), never a hint about which accounts exist. Characters no address can hold
# (NUL, controls, lone surrogates) are a 422, and the length is checked again after
# normalising, since lower-casing can lengthen a string ("İ" -> "i̇").
LoginEmail = Annotated[
    str,
    StringConstraints(min_length=1, max_length=254),
    AfterValidator(no_unsafe_chars),
    AfterValidator(normalize_login_email),
    StringConstraints(max_length=320),
]
TokenString = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class LoginRequest(StrictModel):
    email: LoginEmail
    password: AnyPassword


class RefreshRequest(StrictModel):
    refresh_token: TokenString | None = None


class PasswordChange(StrictModel):
    current_password: AnyPassword
    new_password: NewPassword


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class MeUpdated(UserPublic):
    """The updated account. An email change ends every session, the caller's too, so it
    also carries a fresh token pair (and sets the cookie, like login); null otherwise."""

    tokens: TokenResponse | None = None
