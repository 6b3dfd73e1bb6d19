"""Request and response shapes for accounts."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from app.core.security import MAX_PASSWORD_BYTES
from app.core.types import PersonName
from app.modules.users.models import UserRole

MIN_PASSWORD_BYTES = 8


def normalize_email(value: str) -> str:
    """One spelling per address: NFC, stripped, lower case (addresses are compared
    case-insensitively everywhere in Telaten)."""
    return unicodedata.normalize("NFC", value).strip().lower()


def normalize_login_email(value: str) -> str:
    """What a login form's email is looked up as: the same spelling registration stores
    (email-validator's normalisation, then lower case) when the address is valid, and
    plain lower case otherwise (it will not match an account, and must not error)."""
    try:
        valid = validate_email(value, check_deliverability=False)
    except (EmailNotValidError, ValueError):
        return normalize_email(value)
    return normalize_email(valid.normalized)


def _password_policy(value: str) -> str:
    size = len(value.encode("utf-8"))
    if size < MIN_PASSWORD_BYTES or size > MAX_PASSWORD_BYTES:
        raise ValueError(
            f"password must be {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes long when "
            f"UTF-8 encoded (this one is {size} bytes)"
        )
    if "\x00" in value:
        raise ValueError("password must not contain NUL characters")
    return value


Email = Annotated[EmailStr, StringConstraints(max_length=254), AfterValidator(normalize_email)]
# Checked by byte length (bcrypt's limit), so no character-count limit would be right;
# the 1024-character cap only stops huge inputs before they are encoded.
NewPassword = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_password_policy)]
# A password to check (login, the current password): anything goes, it is only compared.
AnyPassword = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserRegister(StrictModel):
    email: Email
    name: PersonName
    password: NewPassword


class UserUpdateMe(StrictModel):
    """What owners may change about themselves; `role` and the like are refused (422).

    Changing the email needs `current_password`: a stolen token pair alone must not be
    enough to take the account's login for good."""

    email: Email | None = None
    name: PersonName | None = None
    current_password: AnyPassword | None = None


class UserAdminUpdate(StrictModel):
    role: UserRole | None = None
    is_active: bool | None = None


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    role: UserRole
    is_active: bool
    created_at: datetime
    updated_at: datetime


class UserPage(BaseModel):
    items: list[UserPublic]
    total: int = Field(ge=0)
    limit: int
    offset: int
