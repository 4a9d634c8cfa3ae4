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


@pytest.mark.parametrize(
    "key",
    [
        "change-me",
        "secret",
        "short-but-not-a-placeholder",
        "change-me-bootstrap-key",
        "change-me-but-make-it-long-enough-to-pass-length",
    ],
)
def test_production_refuses_a_placeholder_or_short_bootstrap_key(key: str) -> None:
    with pytest.raises(ValidationError, match="BOOTSTRAP_API_KEY is a placeholder"):
        Settings(_env_file=None, app_env="production", bootstrap_api_key=key)


def test_production_accepts_a_long_random_bootstrap_key() -> None:
    key = "ssk_" + "x7Rq2" * 9

    settings = Settings(_env_file=None, app_env="production", bootstrap_api_key=key)

    assert settings.bootstrap_api_key is not None
    assert settings.bootstrap_api_key.get_secret_value() == key


def test_development_accepts_the_example_bootstrap_key_and_never_shows_it() -> None:
    settings = Settings(_env_file=None, bootstrap_api_key="change-me-bootstrap-key")

    assert settings.bootstrap_api_key is not None
    assert settings.bootstrap_api_key.get_secret_value() == "change-me-bootstrap-key"
    assert "change-me-bootstrap-key" not in repr(settings)


def test_an_empty_bootstrap_key_is_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOTSTRAP_API_KEY", "")

    assert Settings(_env_file=None).bootstrap_api_key is None


def test_limits_have_defaults() -> None:
    settings = Settings(_env_file=None)

    assert (settings.signup_rate_limit, settings.api_key_rate_limit) == ("10/minute", "600/minute")
    assert [(r.amount, r.GRANULARITY.name) for r in settings.signup_rate] == [(10, "minute")]
    assert settings.rate_limit_storage_uri == "memory://"
    assert settings.trusted_proxies == []
    assert (settings.welcome_resends_per_day, settings.notifications_per_user_per_hour) == (3, 20)


@pytest.mark.parametrize("off", ["0", ""])
def test_zero_or_empty_switches_each_limit_off(monkeypatch: pytest.MonkeyPatch, off: str) -> None:
    for name in (
        "SIGNUP_RATE_LIMIT",
        "API_KEY_RATE_LIMIT",
        "WELCOME_RESENDS_PER_DAY",
        "NOTIFICATIONS_PER_USER_PER_HOUR",
    ):
        monkeypatch.setenv(name, off)

    settings = Settings(_env_file=None)

    assert settings.signup_rate == settings.api_key_rate == []
    assert settings.welcome_resends_per_day == settings.notifications_per_user_per_hour == 0


def test_rates_follow_the_limits_notation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY_RATE_LIMIT", "5/second;100/hour")

    rates = Settings(_env_file=None).api_key_rate

    assert [(r.amount, r.GRANULARITY.name) for r in rates] == [(5, "second"), (100, "hour")]


@pytest.mark.parametrize("rate", ["ten a minute", "10/fortnight", "0/minute"])
def test_a_rate_the_library_cannot_read_or_that_allows_nothing_is_refused(rate: str) -> None:
    with pytest.raises(ValidationError, match="signup_rate_limit"):
        Settings(_env_file=None, signup_rate_limit=rate)


def test_trusted_proxies_are_a_comma_separated_list_of_addresses_or_networks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7,::1")

    proxies = Settings(_env_file=None).trusted_proxies

    assert [str(network) for network in proxies] == ["10.0.0.0/8", "192.0.2.7/32", "::1/128"]


def test_a_trusted_proxy_that_is_not_an_address_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match=r"'proxy\.internal' is not an IP address"):
        Settings(_env_file=None, trusted_proxies="proxy.internal")


@pytest.mark.parametrize("uri", ["memory://", "redis://cache:6379", "rediss://cache:6380/1"])
def test_rate_limit_storage_is_memory_or_redis(uri: str) -> None:
    assert Settings(_env_file=None, rate_limit_storage_uri=uri).rate_limit_storage_uri == uri


def test_an_unknown_rate_limit_storage_is_refused() -> None:
    with pytest.raises(ValidationError, match="RATE_LIMIT_STORAGE_URI must be"):
        Settings(_env_file=None, rate_limit_storage_uri="memcached://cache:11211")


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
    assert {"smtp_password", "bootstrap_api_key"} <= set(secret_settings())


@pytest.mark.parametrize(
    "invalid",
    [
        {"app_env": "production", "bootstrap_api_key": "too-short"},  # a validator's error
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
        "BOOTSTRAP_API_KEY": "short-S3cret-token",
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
    assert "BOOTSTRAP_API_KEY is a placeholder" in result.stderr
    for secret in ("short-S3cret-token", "smtp-S3cret-password", "PW-5ecret-db"):
        assert secret not in result.stdout + result.stderr
