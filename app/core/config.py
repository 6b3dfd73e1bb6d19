"""Service settings, read from the environment and `.env` (README, "Configuration";
every key is in .env.example).

The service starts with no `.env` at all: every key has a development default, the
database is a SQLite file in `DATA_DIR`, and a missing `SECRET_KEY` is generated once and
kept in a 0600 file there so that restarts and several workers sign tokens alike.
With `ENV=production` unsafe values are refused before anything starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)
MIN_SECRET_KEY_BYTES = 32

# Values copied from examples and tutorials; a production key equal to one of these
# is as good as public.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "change-this-to-a-long-random-string-of-64-characters-or-more",
        "secret",
        "secret-key",
        "secretkey",
        "your-secret-key",
        "your_secret_key",
        "your-secret-key-here",
        "supersecret",
        "super-secret-key",
        "insecure",
        "development",
        "test",
    }
)


# OpenAI-compatible endpoints of the providers `LLM_PROVIDER` can name.
LLM_PROVIDER_URLS = {
    "groq": "https://api.groq.com/openai/v1",
    "together": "https://api.together.xyz/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "openai": "https://api.openai.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "ollama": "http://localhost:11434/v1",
}


class SettingsError(Exception):
    """The settings cannot be used; the message names the offending key(s)."""


def _split_origins(value: Any) -> Any:
    """Accept `CORS_ORIGINS` as a JSON list or as a comma-separated string."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        validate_default=True,
    )

    PROJECT_NAME: str = "Telaten Backend"
    API_V1_STR: str = "/api/v1"
    ENV: Literal["development", "production"] = "development"
    # Interactive docs (/docs, /redoc) and the schema ({API_V1_STR}/openapi.json); unset
    # means on in development and off in production.
    DOCS_ENABLED: bool | None = None
    HOST: str = "127.0.0.1"
    PORT: int = Field(default=8000, ge=1, le=65535)
    WORKERS: int = Field(default=1, ge=1, le=64)

    DATA_DIR: Path = Path(".telaten")
    DATABASE_URL: str = Field(default="", repr=False)  # may carry a password
    DB_POOL_SIZE: int = Field(default=10, ge=1)
    DB_MAX_OVERFLOW: int = Field(default=10, ge=0)
    DB_POOL_TIMEOUT: float = Field(default=10.0, gt=0)
    DB_CONNECT_TIMEOUT: float = Field(default=5.0, gt=0)
    DB_STATEMENT_TIMEOUT_MS: int = Field(default=30_000, ge=0)

    SECRET_KEY: SecretStr | None = None
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=60, ge=1, le=24 * 60)
    REFRESH_TOKEN_EXPIRE_DAYS: int = Field(default=7, ge=1, le=365)
    BCRYPT_ROUNDS: int = Field(default=12, ge=4, le=16)
    # Failed logins within LOGIN_THROTTLE_WINDOW_SECONDS: per account *and* client address
    # (a 429 for that address only, so a guesser elsewhere cannot lock the owner out), per
    # address across accounts, and per account across addresses (distributed guessing).
    LOGIN_MAX_FAILURES: int = Field(default=5, ge=1)
    LOGIN_MAX_FAILURES_PER_CLIENT: int = Field(default=50, ge=1)
    LOGIN_MAX_FAILURES_PER_ACCOUNT: int = Field(default=100, ge=1)
    LOGIN_THROTTLE_WINDOW_SECONDS: int = Field(default=900, ge=1)
    # After this many failures on an account (from any addresses) in the window, each
    # further attempt on it waits 0.5 s, 1 s, 2 s... (at most LOGIN_DELAY_MAX_SECONDS;
    # 0 = never) before its password is checked.
    LOGIN_DELAY_AFTER_FAILURES: int = Field(default=10, ge=1)
    LOGIN_DELAY_MAX_SECONDS: float = Field(default=10.0, ge=0, le=60)
    # Addresses an account logged in from within this many days stay exempt from the
    # account-wide limit and delay (a guesser elsewhere cannot lock the owner out at their
    # usual places); 0 turns the exemption off.
    LOGIN_KNOWN_ADDRESS_DAYS: int = Field(default=30, ge=0, le=365)
    REGISTER_MAX_PER_CLIENT: int = Field(default=20, ge=1)
    # Changes of the login email one account may attempt per window (429 beyond).
    EMAIL_CHANGES_PER_WINDOW: int = Field(default=5, ge=1)
    EMAIL_CHANGE_WINDOW_SECONDS: int = Field(default=3600, ge=1)
    # CSV exports one user may stream at the same time (429 with Retry-After beyond).
    EXPORT_MAX_PARALLEL_PER_USER: int = Field(default=2, ge=1, le=100)

    LLM_PROVIDER: (
        Literal["groq", "together", "deepseek", "openai", "openrouter", "ollama"] | None
    ) = None
    LLM_API_KEY: SecretStr | None = None
    LLM_BASE_URL: str | None = None
    LLM_MODEL_NAME: str | None = None
    LLM_TEMPERATURE: float = Field(default=0.4, ge=0, le=2)
    LLM_TIMEOUT_SECONDS: float = Field(default=60.0, gt=0, le=600)
    LLM_MAX_RETRIES: int = Field(default=2, ge=0, le=10)
    LLM_CONTEXT_WINDOW: int = Field(default=32_768, ge=1024)
    # Most tokens one model response may use (unset: the provider's own limit).
    LLM_MAX_TOKENS: int | None = Field(default=None, ge=1, le=1_000_000)
    # Ask for token usage at the end of each stream (`stream_options.include_usage`).
    # A server that refuses it is asked again without, once per process.
    LLM_STREAM_USAGE: bool = True

    CHAT_HISTORY_MESSAGES: int = Field(default=20, ge=0, le=200)
    CHAT_HISTORY_MAX_CHARS: int = Field(default=24_000, ge=0)
    CHAT_MAX_TOOL_ROUNDS: int = Field(default=6, ge=1, le=50)
    CHAT_TURN_TIMEOUT_SECONDS: float = Field(default=300.0, gt=0, le=3600)
    # Per user: answers streaming at once (over both chat endpoints), and turns (each
    # one to seven model calls) per sliding window.
    CHAT_MAX_PARALLEL_STREAMS: int = Field(default=2, ge=1, le=100)
    CHAT_TURNS_PER_WINDOW: int = Field(default=60, ge=1, le=100_000)
    CHAT_TURN_WINDOW_SECONDS: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    # Per model response: tool calls that run (the rest get an error result the model
    # reads), and the characters it may stream (reply text and tool-call arguments).
    CHAT_MAX_TOOL_CALLS_PER_RESPONSE: int = Field(default=8, ge=1, le=64)
    CHAT_MAX_RESPONSE_CHARS: int = Field(default=100_000, ge=1000, le=10_000_000)
    # A session's streaming claim (one answer at a time per session) holds this long
    # unrenewed; a running turn renews it every third of it, so after a crash the
    # session is free again within this many seconds.
    CHAT_STREAM_CLAIM_SECONDS: float = Field(default=30.0, ge=3, le=600)

    ROADMAP_ATTEMPT_TIMEOUT_SECONDS: float = Field(default=120.0, gt=0, le=1800)
    ROADMAP_MAX_ATTEMPTS: int = Field(default=3, ge=1, le=10)
    ROADMAP_CONCURRENCY: int = Field(default=4, ge=1, le=100)
    ROADMAP_GENERATIONS_PER_DAY: int = Field(default=5, ge=1, le=1000)

    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    LOG_FORMAT: Literal["auto", "console", "json"] = "auto"

    CORS_ORIGINS: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The Telaten web client's API (the original backend's paths and shapes), served by an
    # adapter under this prefix; empty turns it off (WEB-CLIENT-CONTRACT.md).
    CLIENT_API_PREFIX: str = "/client/v1"
    # SameSite of the refresh-token cookies: lax suits a front end on the same site as the
    # API; none (always sent with Secure) lets a front end on another site keep its session.
    REFRESH_COOKIE_SAMESITE: Literal["lax", "strict", "none"] = "lax"
    # Seconds during which the web client's refresh cookie, once rotated, may be presented
    # again for a new pair in the same family (two tabs renewing at once); after that a
    # replay revokes the family as before. 0 turns the grace off.
    CLIENT_REFRESH_GRACE_SECONDS: float = Field(default=5.0, ge=0, le=10)
    # Proxies whose X-Forwarded-For/-Proto are believed (client address for throttling).
    FORWARDED_ALLOW_IPS: str = "127.0.0.1"
    MAX_REQUEST_BODY_BYTES: int = Field(default=1_048_576, ge=1024)
    # Slow and huge clients, enforced by `telaten serve`'s HTTP protocol (core/http_limits.py):
    # the largest request head (request line + headers; 431, or 414 for a long URL), the
    # time a head may take from the connection's opening or its first byte (408), and the
    # longest pause inside a request body (408).
    HTTP_MAX_HEAD_BYTES: int = Field(default=32_768, ge=4096, le=1_048_576)
    HTTP_HEAD_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=300)
    HTTP_BODY_IDLE_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0, le=3600)

    POINTS_TRANSACTION_DAILY_CAP: int = Field(default=10, ge=0, le=10_000)
    POINTS_ROADMAP_DAILY_CAP: int = Field(default=250, ge=0, le=1_000_000)

    MCP_CONFIG_PATH: Path = Path("mcp.json")
    # Defaults for mcp.json entries without their own `timeout` / `connect_timeout`.
    MCP_CALL_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0, le=600)
    MCP_CONNECT_TIMEOUT_SECONDS: float = Field(default=60.0, gt=0, le=600)
    MCP_PING_INTERVAL_SECONDS: float = Field(default=30.0, gt=0, le=3600)
    MCP_RECONNECT_MAX_SECONDS: float = Field(default=60.0, gt=0, le=3600)
    # Telaten's own MCP endpoint: legacy SSE streams (/mcp/sse) one user may hold open at
    # once, across every worker and host; and how often an open stream re-checks its token
    # and account (it ends when the account is deactivated, its sessions are ended or the
    # token expires; expiry itself ends it on time).
    MCP_SERVER_MAX_STREAMS_PER_USER: int = Field(default=5, ge=1, le=100)
    MCP_SERVER_STREAM_RECHECK_SECONDS: float = Field(default=30.0, gt=0, le=3600)

    FIRST_ADMIN_EMAIL: str = "admin@telaten.com"
    FIRST_ADMIN_PASSWORD: SecretStr | None = None

    @field_validator("CORS_ORIGINS", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        return _split_origins(value)

    @field_validator(
        "DOCS_ENABLED",
        "SECRET_KEY",
        "LLM_API_KEY",
        "FIRST_ADMIN_PASSWORD",
        "LLM_BASE_URL",
        "LLM_MODEL_NAME",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `KEY=` in .env (as in .env.example) means "not set", not "the empty string".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("FIRST_ADMIN_EMAIL")
    @classmethod
    def _admin_email_is_an_address(cls, value: str) -> str:
        try:
            valid = validate_email(value, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(f"not a usable email address ({exc})") from None
        return valid.normalized.lower()

    @field_validator("FIRST_ADMIN_PASSWORD")
    @classmethod
    def _admin_password_fits_bcrypt(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not 8 <= len(value.get_secret_value().encode()) <= 72:
            raise ValueError("must be 8 to 72 bytes long when UTF-8 encoded")
        return value

    @field_validator("LLM_PROVIDER", mode="before")
    @classmethod
    def _lower_provider(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("LLM_MAX_TOKENS", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """`LLM_MAX_TOKENS=` (as in .env.example) means no limit of ours."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("ENV", mode="before")
    @classmethod
    def _lower_env(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("API_V1_STR")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/"):
            raise ValueError("must start with '/' and not end with '/', e.g. /api/v1")
        return value

    @field_validator("CLIENT_API_PREFIX")
    @classmethod
    def _client_prefix_shape(cls, value: str) -> str:
        value = value.strip()
        if value and (not value.startswith("/") or value.endswith("/")):
            raise ValueError("must be empty, or start with '/' and not end with '/' (/client/v1)")
        return value

    @field_validator("REFRESH_COOKIE_SAMESITE", mode="before")
    @classmethod
    def _lower_samesite(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _resolve_and_check(self) -> Settings:
        self.DATA_DIR = self.DATA_DIR.expanduser()
        if not self.DATABASE_URL:
            self.DATABASE_URL = f"sqlite+aiosqlite:///{(self.DATA_DIR / 'telaten.db').as_posix()}"
        try:
            url = make_url(self.DATABASE_URL)
        except Exception as exc:  # sqlalchemy raises ArgumentError; never echo the URL
            raise ValueError("DATABASE_URL is not a valid database URL") from exc
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError(
                "DATABASE_URL must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL"
            )
        if self.CLIENT_API_PREFIX and _overlaps(self.CLIENT_API_PREFIX, self.API_V1_STR):
            raise ValueError("CLIENT_API_PREFIX must not be API_V1_STR, nor inside it or around it")
        if self.is_production:
            self._check_production()
        return self

    def _check_production(self) -> None:
        problems: list[str] = []
        key = self.SECRET_KEY.get_secret_value() if self.SECRET_KEY else ""
        if not key:
            problems.append("SECRET_KEY is required when ENV=production")
        elif key.strip().lower() in PLACEHOLDER_SECRETS:
            problems.append("SECRET_KEY is a known placeholder value; generate a random one")
        elif len(key.encode()) < MIN_SECRET_KEY_BYTES:
            problems.append(
                f"SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes when ENV=production"
            )
        if self.is_sqlite:
            problems.append("DATABASE_URL must be PostgreSQL when ENV=production, not SQLite")
        if "*" in self.CORS_ORIGINS:
            problems.append(
                "CORS_ORIGINS must list the allowed origins when ENV=production, not '*'"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def is_production(self) -> bool:
        return self.ENV == "production"

    @property
    def docs_enabled(self) -> bool:
        return self.DOCS_ENABLED if self.DOCS_ENABLED is not None else not self.is_production

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.DATABASE_URL).get_backend_name() == "sqlite"

    @property
    def refresh_cookie_secure(self) -> bool:
        """Secure in production (HTTPS) and always with SameSite=None, which browsers
        accept only on Secure cookies."""
        return self.is_production or self.REFRESH_COOKIE_SAMESITE == "none"

    @property
    def longest_rate_window_seconds(self) -> float:
        """How long counted attempts must be kept: the longest window of any rate limit
        (housekeeping deletes older ones). A new window setting belongs in this list."""
        return max(
            self.LOGIN_THROTTLE_WINDOW_SECONDS,
            self.EMAIL_CHANGE_WINDOW_SECONDS,
            self.CHAT_TURN_WINDOW_SECONDS,
            24 * 3600,
        )

    @property
    def log_json(self) -> bool:
        if self.LOG_FORMAT == "auto":
            return self.is_production
        return self.LOG_FORMAT == "json"

    @property
    def llm_base_url(self) -> str | None:
        """The explicit `LLM_BASE_URL`, else the `LLM_PROVIDER` preset's."""
        if self.LLM_BASE_URL:
            return self.LLM_BASE_URL.rstrip("/")
        return LLM_PROVIDER_URLS.get(self.LLM_PROVIDER) if self.LLM_PROVIDER else None

    @property
    def llm_configured(self) -> bool:
        return bool(self.llm_base_url and self.LLM_MODEL_NAME)

    def secret_key(self) -> str:
        """The signing key: the configured one, or the development key kept in DATA_DIR."""
        if self.SECRET_KEY is not None and self.SECRET_KEY.get_secret_value():
            return self.SECRET_KEY.get_secret_value()
        if self.is_production:  # unreachable after validation; kept as a guard
            raise SettingsError("SECRET_KEY is required when ENV=production")
        return load_or_create_secret_file(self.DATA_DIR / SECRET_KEY_FILE)

    def masked(self) -> dict[str, Any]:
        """Effective settings with every secret hidden, for `telaten config` and logs."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "**********"
            elif name == "DATABASE_URL":
                value = make_url(value).render_as_string(hide_password=True)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        if self.SECRET_KEY is None and not self.is_production:
            out["SECRET_KEY"] = f"(generated, kept in {self.DATA_DIR / SECRET_KEY_FILE})"
        return out


def _overlaps(a: str, b: str) -> bool:
    """Whether one URL prefix is the other or lies under it."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def load_or_create_secret_file(path: Path, nbytes: int = 48) -> str:
    """Read a secret from `path`, creating it (mode 0600) on first use.

    Several workers may start at once: the secret is written to a private temporary
    file and hard-linked into place, so exactly one value wins and nobody reads a
    half-written file.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # private to the service
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(nbytes))
        with contextlib.suppress(FileExistsError):  # another worker won: use its value
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise SettingsError(f"{path} is empty; delete it to have a new secret generated")
    return value


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line per problem, naming the setting, never echoing its value."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        lines.append(msg if where == "settings" or where in msg else f"{where}: {msg}")
    return "Invalid configuration: " + "; ".join(lines)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; raises SettingsError with a clear message."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
