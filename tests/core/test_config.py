"""Settings: validated at start, documented in .env.example."""

import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from pydantic import SecretStr, ValidationError

from app.core.config import Settings
from tests.support.server import PROJECT_ROOT


def test_every_setting_is_documented_in_env_example() -> None:
    text = (PROJECT_ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))

    assert documented == {name.upper() for name in Settings.model_fields}


def test_default_is_a_sqlite_file_in_the_data_folder(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)

    assert settings.is_sqlite
    assert settings.resolved_database_url == (
        f"sqlite+aiosqlite:///{tmp_path.resolve()}/signup-service.db"
    )
    assert settings.mail_dir == tmp_path / "mail"


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/signup", "postgresql+asyncpg://u:p@db:5432/signup"),
        ("postgres://u:p@db/signup", "postgresql+asyncpg://u:p@db/signup"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_url_gets_its_async_driver(given: str, used: str) -> None:
    assert Settings(_env_file=None, database_url=given).resolved_database_url == used


def test_a_database_without_an_async_driver_is_refused() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL must be PostgreSQL"):
        Settings(_env_file=None, database_url="mysql://u@db/signup")


def test_a_lease_no_longer_than_the_timeout_is_refused() -> None:
    with pytest.raises(ValidationError, match="TASK_LEASE_SECONDS must be greater"):
        Settings(_env_file=None, task_timeout_seconds=60, task_lease_seconds=60)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_HOST", "mail")
    monkeypatch.setenv("SMTP_TLS", "starttls")
    monkeypatch.setenv("TASK_MAX_ATTEMPTS", "3")

    settings = Settings(_env_file=None)

    assert (settings.smtp_host, settings.smtp_tls, settings.task_max_attempts) == (
        "mail",
        "starttls",
        3,
    )


@pytest.mark.parametrize("token", ["change-me", "secret", "short-but-not-a-placeholder"])
def test_production_refuses_a_placeholder_or_short_admin_token(token: str) -> None:
    with pytest.raises(ValidationError, match="ADMIN_TOKEN is a placeholder"):
        Settings(_env_file=None, app_env="production", admin_token=token)


def test_development_accepts_the_example_admin_token() -> None:
    settings = Settings(_env_file=None, admin_token="change-me")

    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "change-me"
    assert "change-me" not in repr(settings)


def test_production_refuses_to_lift_the_ssrf_guard() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_ALLOW_PRIVATE_TARGETS"):
        Settings(_env_file=None, app_env="production", webhook_allow_private_targets=True)


def test_the_ssrf_guard_is_on_by_default() -> None:
    assert Settings(_env_file=None).webhook_allow_private_targets is False


def secret_settings() -> list[str]:
    """Every setting typed SecretStr, whoever added it."""
    return [
        name
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *get_args(field.annotation))
    ]


def test_every_secret_setting_is_found_by_its_type() -> None:
    assert {"smtp_password", "admin_token"} <= set(secret_settings())


@pytest.mark.parametrize(
    "invalid",
    [
        {"app_env": "production", "admin_token": "too-short"},  # a model-level error
        {"task_timeout_seconds": 60, "task_lease_seconds": 60},  # another one
        {"database_url": "mysql://signup:PW-5ecret-db@db/signup"},  # the URL's own error
        {"database_url": "postgresql://signup:PW-5ecret-db@db:port/signup"},
        {"smtp_port": "not-a-port"},  # a field-level error elsewhere
    ],
)
def test_a_settings_error_shows_no_secret_setting_nor_the_database_password(
    invalid: dict[str, object],
) -> None:
    secrets = {name: f"{name}-S3cret-value" for name in secret_settings()}
    values = {"database_url": "postgresql://signup:PW-5ecret-db@db/signup", **secrets, **invalid}

    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, **values)

    error = raised.value
    shown = "\n".join(
        [str(error), repr(error), error.json(), repr(error.errors()), repr(error.errors())]
    )
    for secret in [*secrets.values(), "too-short", "PW-5ecret-db"]:
        assert secret not in shown
    assert "validation error for Settings" in str(error)  # still says what is wrong


def test_a_database_url_that_is_no_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL is not a valid URL") as raised:
        Settings(_env_file=None, database_url="signup:PW-5ecret-db@db")

    assert "PW-5ecret-db" not in str(raised.value)


def test_the_settings_repr_hides_every_secret_and_the_database_password() -> None:
    secrets = {name: f"{name}-S3cret-value" for name in secret_settings()}
    settings = Settings(
        _env_file=None, database_url="postgresql://signup:PW-5ecret-db@db/signup", **secrets
    )

    shown = repr(settings) + str(settings)

    assert "postgresql+asyncpg://signup:***@db/signup" in shown
    for secret in [*secrets.values(), "PW-5ecret-db"]:
        assert secret not in shown
    assert settings.database_url == "postgresql+asyncpg://signup:PW-5ecret-db@db/signup"


def test_a_bad_setting_at_start_prints_no_secret() -> None:
    environment = {
        "PATH": "/usr/bin:/bin",
        "APP_ENV": "production",
        "ADMIN_TOKEN": "short-S3cret-token",
        "SMTP_PASSWORD": "smtp-S3cret-password",
        "DATABASE_URL": "postgresql://signup:PW-5ecret-db@127.0.0.1:1/signup",
    }

    result = subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        env=environment,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "ADMIN_TOKEN is a placeholder" in result.stderr
    for secret in ("short-S3cret-token", "smtp-S3cret-password", "PW-5ecret-db"):
        assert secret not in result.stdout + result.stderr
