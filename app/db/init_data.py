"""First-start data: the default admin account.

If no admin exists yet, `FIRST_ADMIN_EMAIL` is created as one, with
`FIRST_ADMIN_PASSWORD` or, when that is unset, a strong generated password written to a
0600 file in `DATA_DIR`. Only the file's path is logged. Several workers may start at
once: the password file has one winner, and the unique email lets one insert succeed.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from sqlalchemy.exc import IntegrityError

from app.core.config import Settings, load_or_create_secret_file
from app.core.errors import ConflictError
from app.core.security import PasswordHasher
from app.db.session import Database
from app.modules.users.models import UserRole
from app.modules.users.schemas import UserRegister
from app.modules.users.service import UserService

log = structlog.stdlib.get_logger(__name__)

ADMIN_PASSWORD_FILE = "first_admin_password"  # noqa: S105 (a file name)


def admin_password_path(settings: Settings) -> Path:
    return settings.DATA_DIR / ADMIN_PASSWORD_FILE


async def ensure_first_admin(db: Database, settings: Settings, hasher: PasswordHasher) -> None:
    async with db.sessionmaker() as session:
        users = UserService(session, hasher)
        if await users.users.any_admin():
            return
        generated = settings.FIRST_ADMIN_PASSWORD is None
        if generated:
            password = load_or_create_secret_file(admin_password_path(settings), nbytes=18)
        else:
            assert settings.FIRST_ADMIN_PASSWORD is not None
            password = settings.FIRST_ADMIN_PASSWORD.get_secret_value()
        data = UserRegister.model_validate(
            {"email": settings.FIRST_ADMIN_EMAIL, "name": "Administrator", "password": password}
        )
        try:
            await users.register(data, role=UserRole.ADMIN)
        except (ConflictError, IntegrityError):
            log.info("first_admin_exists", email=data.email)  # another worker, or a user
            return
        if generated:
            log.warning(
                "first_admin_created",
                email=data.email,
                saved_in=str(admin_password_path(settings)),
                hint="read the password from the file, log in, change it, then delete the file",
            )
        else:
            log.info("first_admin_created", email=data.email)
