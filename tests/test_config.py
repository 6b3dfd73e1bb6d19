"""Settings: development defaults, the shared development key, production refusals."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.config import (
    SECRET_KEY_FILE,
    Settings,
    SettingsError,
    describe_validation_error,
    get_settings,
    load_or_create_secret_file,
)

STRONG_KEY = "k" * 16 + "Zq8#r2Lx9@pW4vN7"  # 32 bytes, not a placeholder
PG_URL = "postgresql+asyncpg://telaten:s3cr3t-pw@db.internal:5432/telaten"


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, DATA_DIR=tmp_path, **values)  # type: ignore[arg-type]


def test_defaults_need_no_env_file(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.ENV == "development"
    assert s.PROJECT_NAME == "Telaten Backend"
    assert s.API_V1_STR == "/api/v1"
    assert s.PORT == 8000
    assert s.ACCESS_TOKEN_EXPIRE_MINUTES == 60
    assert s.REFRESH_TOKEN_EXPIRE_DAYS == 7
    assert s.LOG_LEVEL == "INFO"
    assert s.FIRST_ADMIN_EMAIL == "admin@telaten.com"
    expected_url = f"sqlite+aiosqlite:///{tmp_path / 'telaten.db'}"
    assert expected_url == s.DATABASE_URL
    assert s.is_sqlite and not s.log_json


def test_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "PORT=9001\nLOG_LEVEL=debug\nCORS_ORIGINS=http://a.test, http://b.test\n"
    )
    monkeypatch.chdir(tmp_path)
    s = Settings(DATA_DIR=tmp_path)
    assert s.PORT == 9001
    assert s.LOG_LEVEL == "DEBUG"
    assert s.CORS_ORIGINS == ["http://a.test", "http://b.test"]


def test_cors_origins_accepts_json_list(tmp_path: Path) -> None:
    assert settings(tmp_path, CORS_ORIGINS='["http://x.test"]').CORS_ORIGINS == ["http://x.test"]


def test_development_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    first = settings(tmp_path).secret_key()
    second = settings(tmp_path).secret_key()
    assert first == second and len(first) >= 48
    mode = stat.S_IMODE((tmp_path / SECRET_KEY_FILE).stat().st_mode)
    assert mode == 0o600


def _create_secret(path: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(load_or_create_secret_file(Path(path)))


@pytest.mark.slow
def test_workers_starting_together_agree_on_the_secret(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    target = tmp_path / "nested" / SECRET_KEY_FILE
    procs = [ctx.Process(target=_create_secret, args=(str(target), queue)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    values = {queue.get(timeout=5) for _ in procs}
    assert len(values) == 1
    assert list(target.parent.iterdir()) == [target]  # no temporary files left behind


def test_explicit_secret_key_wins(tmp_path: Path) -> None:
    s = settings(tmp_path, SECRET_KEY=STRONG_KEY)
    assert s.secret_key() == STRONG_KEY
    assert not (tmp_path / SECRET_KEY_FILE).exists()


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"DATABASE_URL": PG_URL}, "SECRET_KEY is required"),
        ({"DATABASE_URL": PG_URL, "SECRET_KEY": "short"}, "SECRET_KEY must be at least 32 bytes"),
        ({"DATABASE_URL": PG_URL, "SECRET_KEY": "changeme"}, "SECRET_KEY is a known placeholder"),
        (
            {
                "DATABASE_URL": PG_URL,
                "SECRET_KEY": "change-this-to-a-long-random-string-of-64-characters-or-more",
            },
            "SECRET_KEY is a known placeholder",
        ),
        ({"SECRET_KEY": STRONG_KEY}, "DATABASE_URL must be PostgreSQL"),
        (
            {"DATABASE_URL": PG_URL, "SECRET_KEY": STRONG_KEY, "CORS_ORIGINS": "*"},
            "CORS_ORIGINS must list the allowed origins",
        ),
        (
            {"DATABASE_URL": PG_URL, "SECRET_KEY": STRONG_KEY, "FIRST_ADMIN_EMAIL": "not-an-email"},
            "FIRST_ADMIN_EMAIL",
        ),
    ],
)
def test_production_refuses_unsafe_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values: dict[str, str], needle: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as info:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(info.value)
    assert needle in message
    assert "s3cr3t-pw" not in message
    if "SECRET_KEY" in values:
        assert values["SECRET_KEY"] not in message.replace("SECRET_KEY", "")


def test_docs_are_on_in_development_and_off_in_production_unless_set(tmp_path: Path) -> None:
    production = {"ENV": "production", "DATABASE_URL": PG_URL, "SECRET_KEY": STRONG_KEY}
    assert settings(tmp_path).docs_enabled
    assert settings(tmp_path, DOCS_ENABLED="").docs_enabled  # `DOCS_ENABLED=` means unset
    assert not settings(tmp_path, DOCS_ENABLED="false").docs_enabled
    assert not settings(tmp_path, **production).docs_enabled
    assert not settings(tmp_path, **production, DOCS_ENABLED="").docs_enabled
    assert settings(tmp_path, **production, DOCS_ENABLED="true").docs_enabled


def test_production_accepts_safe_values(tmp_path: Path) -> None:
    s = settings(tmp_path, ENV="production", DATABASE_URL=PG_URL, SECRET_KEY=STRONG_KEY)
    assert s.is_production and s.log_json
    assert not (tmp_path / SECRET_KEY_FILE).exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DATABASE_URL", "mysql://u:hunter2@h/db"),
        ("DATABASE_URL", "::hunter2::"),
        ("PORT", "hunter2"),
    ],
)
def test_invalid_values_are_named_without_echo(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ValidationError) as info:
        settings(tmp_path, **{key: value})
    message = describe_validation_error(info.value)
    assert key in message
    assert "hunter2" not in message


def test_masked_hides_every_secret(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        SECRET_KEY=STRONG_KEY,
        DATABASE_URL=PG_URL,
        LLM_API_KEY="sk-live-abcdef",
        FIRST_ADMIN_PASSWORD="Adm1n-pass-word",
    )
    text = repr(s.masked()) + repr(s)
    for secret in (STRONG_KEY, "s3cr3t-pw", "sk-live-abcdef", "Adm1n-pass-word"):
        assert secret not in text
    assert s.masked()["DATABASE_URL"] == "postgresql+asyncpg://telaten:***@db.internal:5432/telaten"


def test_env_example_documents_every_setting_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = Path(__file__).resolve().parents[1] / ".env.example"
    keys = {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert keys == set(Settings.model_fields)
    monkeypatch.chdir(tmp_path)
    s = Settings(_env_file=example, DATA_DIR=tmp_path)  # type: ignore[call-arg]
    assert s.SECRET_KEY is None and s.FIRST_ADMIN_PASSWORD is None and s.LLM_API_KEY is None
    assert s.is_sqlite and s.CORS_ORIGINS == [] and not s.llm_configured
