"""Settings: validated at start, documented in .env.example."""

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

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
