"""Exception handlers: every error body is JSON `{"detail": ...}`.

Unexpected exceptions are answered by RequestContextMiddleware (500 with the request id);
these handlers cover the expected ones: HTTP errors, validation errors, and a database
that is unreachable or a connection pool with no connection free in time (503, so
clients retry instead of reporting a bug).
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.stdlib.get_logger("app.errors")

DB_UNAVAILABLE_DETAIL = "The database is unavailable; please retry shortly."
CHANGED_MEANWHILE_DETAIL = (
    "The item was changed or deleted by another request meanwhile; reload it and retry."
)
DB_RETRY_AFTER_SECONDS = "5"
SERVICE_BUSY_DETAIL = "The service is busy; please retry shortly."
BUSY_RETRY_AFTER_SECONDS = "2"


class DomainError(Exception):
    """A business-rule failure a service raises; routes never build HTTP errors by hand."""

    status_code = 400

    def __init__(
        self,
        detail: str,
        *,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        if status_code is not None:
            self.status_code = status_code


class UnprocessableError(DomainError):
    """A value the schema accepts but a rule only the service can check refuses (an
    unknown category, a range too long): 422."""

    status_code = 422


class NotFoundError(DomainError):
    status_code = 404


class ConflictError(DomainError):
    status_code = 409


class PermissionDeniedError(DomainError):
    status_code = 403


class UnauthorizedError(DomainError):
    """Missing or bad credentials; answered with `WWW-Authenticate: Bearer`."""

    status_code = 401

    def __init__(self, detail: str = "Could not validate credentials") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class TooManyRequestsError(DomainError):
    status_code = 429

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class FieldProblem(BaseModel):
    """One field error of a 422 (the submitted value is never echoed)."""

    type: str
    loc: list[str | int]
    msg: str


class UnprocessableContent(BaseModel):
    """A 422: the request's field errors, or one message when the request is well formed
    but a value breaks a rule only the service can check (an unknown category, a range)."""

    detail: list[FieldProblem] | str


# What a route declares in `responses=`: status code -> OpenAPI response object.
Responses = dict[int | str, dict[str, Any]]

# For operations whose services answer 422 with a message (declare it in `responses=`).
UNPROCESSABLE_RESPONSE: Responses = {
    422: {"model": UnprocessableContent, "description": "Invalid input"}
}
# What every operation that reads a request body may answer before it runs: FastAPI's 400
# for a body that cannot be decoded at all (not UTF-8), BodySizeLimitMiddleware's 413.
BODY_ERROR_RESPONSES: Responses = {
    400: {"description": "The request body could not be decoded"},
    413: {"description": "The request body is too large"},
}


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Field errors without the submitted values: they may hold passwords or megabytes."""
    out = []
    for err in exc.errors():
        item = {"type": err.get("type"), "loc": list(err.get("loc", ())), "msg": err.get("msg")}
        out.append(item)
    return out


def validation_problems(exc: ValidationError, limit: int = 20) -> str:
    """A pydantic error as one line a person (or a model) can act on, without the
    submitted values."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)[:limit]
    )


def is_db_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "cannot reach the database", not "bad query"."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.OperationalError):
        return True
    return isinstance(exc, ConnectionError | TimeoutError)


def is_pool_exhausted(exc: BaseException) -> bool:
    """True when no pooled connection came free within DB_POOL_TIMEOUT: the database is
    up, this process is busy (SQLAlchemy raises its own TimeoutError only there)."""
    return isinstance(exc, sa_exc.TimeoutError)


# PostgreSQL's answers to contention, which a retry gets past: a serialization failure,
# a deadlock, a lock or statement timeout.
_CONTENTION_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})
# SQLite's: another connection held the write lock longer than busy_timeout.
_SQLITE_LOCKED = ("database is locked", "database table is locked")


def is_contention(exc: BaseException) -> bool:
    """True when the database is up but too busy to answer this request now: the pool
    had no free connection, or the request lost a lock or timed out against others."""
    if is_pool_exhausted(exc):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) in _CONTENTION_SQLSTATES:
        return True
    return isinstance(exc, sa_exc.OperationalError) and any(
        text in str(exc.orig) for text in _SQLITE_LOCKED
    )


def _db_error_name(exc: BaseException) -> str:
    """The error's kind for the log, never its text (which may quote SQL or values)."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None)
    return f"{type(exc).__name__}({state})" if state else type(exc).__name__


def install_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_errors(exc)}, status_code=422)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(sa_exc.DataError)
    async def data_error(request: Request, exc: sa_exc.DataError) -> JSONResponse:
        # Validation should have caught it (too long, out of range, bad encoding); if it
        # did not, it is still the input's fault: say so rather than 500.
        log.warning("database_rejected_value", path=request.url.path, error=type(exc.orig).__name__)
        return JSONResponse({"detail": "A value is not acceptable (too long or out of range)"}, 422)

    # The safety net for races between two requests that no service anticipated: an
    # UPDATE or DELETE of a row another request deleted meanwhile (StaleDataError), or a
    # unique or foreign key that a parallel write broke (IntegrityError). The services
    # answer the races they know precisely (404, 409); these are a 409, not a 500.
    @app.exception_handler(StaleDataError)
    async def stale_data(request: Request, exc: StaleDataError) -> JSONResponse:
        log.warning("changed_meanwhile", path=request.url.path, error="StaleDataError")
        return JSONResponse({"detail": CHANGED_MEANWHILE_DETAIL}, status_code=409)

    @app.exception_handler(sa_exc.IntegrityError)
    async def integrity_error(request: Request, exc: sa_exc.IntegrityError) -> JSONResponse:
        log.warning("changed_meanwhile", path=request.url.path, error=type(exc.orig).__name__)
        return JSONResponse({"detail": CHANGED_MEANWHILE_DETAIL}, status_code=409)

    async def db_unavailable(request: Request, exc: Exception) -> JSONResponse:
        if is_contention(exc):
            # Not "unavailable": the database answers, this request lost to others.
            log.warning("database_busy", error=_db_error_name(exc), path=request.url.path)
            return JSONResponse(
                {"detail": SERVICE_BUSY_DETAIL},
                status_code=503,
                headers={"Retry-After": BUSY_RETRY_AFTER_SECONDS},
            )
        if not is_db_unavailable(exc):
            raise exc  # a genuine bug: RequestContextMiddleware logs it and answers 500
        log.warning("database_unavailable", error=type(exc).__name__, path=request.url.path)
        return JSONResponse(
            {"detail": DB_UNAVAILABLE_DETAIL},
            status_code=503,
            headers={"Retry-After": DB_RETRY_AFTER_SECONDS},
        )

    for exc_type in (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        sa_exc.DBAPIError,
        ConnectionError,
        TimeoutError,
    ):
        app.add_exception_handler(exc_type, db_unavailable)
