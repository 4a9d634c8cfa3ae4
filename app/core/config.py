"""Settings read from the environment (and `.env`), validated once at start."""

import ipaddress
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from limits import RateLimitItem, parse_many
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SmtpTls = Literal["none", "starttls", "tls"]

_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


class HidesPassword:
    """Marks a URL setting whose password is a secret, like every SecretStr setting."""


_HIDDEN = "**********"

_PLACEHOLDERS = {"change-me", "changeme", "secret", "admin", "token", "password"}
_PLACEHOLDER_WORDS = ("change-me", "changeme", "example", "placeholder")
_MIN_SECRET_LENGTH = 32


def is_placeholder(secret: str) -> bool:
    """A value copied from documentation rather than generated: never good enough in production."""
    lowered = secret.lower()
    return lowered in _PLACEHOLDERS or any(word in lowered for word in _PLACEHOLDER_WORDS)


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_rate(value: str) -> list[RateLimitItem]:
    """A rate in the `limits` library's notation (`10/minute`, `5/second;100/hour`);
    `0` or empty: no limit."""
    value = value.strip()
    if value in {"", "0"}:
        return []
    items = parse_many(value)
    if any(item.amount < 1 for item in items):
        raise ValueError(f"{value!r} allows nothing; write 0 to switch the limit off")
    return items


class Settings(BaseSettings):
    """Every knob of the service; `.env.example` documents each one."""

    # hide_input_in_errors: pydantic would print the input of a failed check, and
    # for a model-level check that is every setting, secrets included.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    app_env: Literal["development", "production"] = "development"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    data_dir: Path = Path("data")
    database_url: Annotated[str | None, HidesPassword()] = Field(
        default=None,
        description="Any SQLAlchemy async URL; unset means a SQLite file in DATA_DIR.",
    )
    database_pool_size: int = Field(default=20, ge=1)
    task_database_pool_size: int = Field(default=10, ge=1)

    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: SmtpTls = "none"
    smtp_pool_size: int = Field(default=8, ge=1)
    mail_from: str = "Signup Service <no-reply@signup-service.localhost>"

    task_timeout_seconds: float = Field(default=30.0, gt=0)
    task_max_attempts: int = Field(default=8, ge=1)
    task_backoff_base_seconds: float = Field(default=1.0, ge=0)
    task_backoff_max_seconds: float = Field(default=600.0, ge=0)
    task_lease_seconds: float = Field(default=120.0, gt=0)
    task_inline_retry_seconds: float = Field(default=5.0, ge=0)
    task_backlog_limit: int = Field(default=1000, ge=1)

    recovery_interval_seconds: float = Field(
        default=5.0, ge=0, description="0 turns the in-process loop off (run `recover` from cron)."
    )
    recovery_grace_seconds: float = Field(default=10.0, ge=0)
    recovery_batch_size: int = Field(default=500, ge=1)
    shutdown_grace_seconds: int = Field(default=20, ge=0)
    serve_background_work: bool = Field(
        default=True,
        description="false: `serve` is a pure web process; `worker` processes do the work.",
    )
    # A worker has no HTTP server: its task counters are served here, with no key,
    # so bind it where only the scraper reaches. 0: off.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"

    # --- Retention: what `prune` deletes, and how old it must be ----------------
    upload_content_retention_days: float = Field(default=7.0, ge=0)
    upload_retention_days: float = Field(default=90.0, ge=0)
    audit_retention_days: float = Field(default=365.0, ge=0)
    notification_retention_days: float = Field(default=90.0, ge=0)
    prune_interval_seconds: float = Field(
        default=3600.0, ge=0, description="0 turns the worker's pruning off (run `prune` instead)."
    )
    prune_batch_size: int = Field(default=1000, ge=1)

    upload_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    # The csv module refuses fields over 128 KiB; a record may not be longer either.
    upload_max_line_bytes: int = Field(default=64 * 1024, ge=64, le=128 * 1024)
    upload_batch_rows: int = Field(default=10_000, ge=1)
    upload_workers: int = Field(default=1, ge=1)
    upload_timeout_seconds: float = Field(default=3600.0, gt=0)

    notification_email_concurrency: int = Field(default=4, ge=1)
    notification_webhook_concurrency: int = Field(default=16, ge=1)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_allow_private_targets: bool = Field(
        default=False,
        description="Lift the SSRF guard (loopback, private targets): development and tests only.",
    )

    # --- Who may call what, and limits on abuse ---------------------------------
    # A key stored (hashed, with every scope) at start, so `docker compose up` has
    # one without a shell into the container.
    bootstrap_api_key: SecretStr | None = None
    # Rates in the `limits` notation (10/minute, 5/second;100/hour); 0 or empty: off.
    signup_rate_limit: str = "10/minute"
    api_key_rate_limit: str = "600/minute"
    # memory:// counts per process; redis://host:6379 shares one budget between replicas.
    rate_limit_storage_uri: str = "memory://"
    # Peers (addresses or networks) whose X-Forwarded-For is believed; empty: none.
    trusted_proxies: Annotated[list[IpNetwork], NoDecode] = Field(default_factory=list)
    # Per recipient, counted in the database; 0 or empty: off.
    welcome_resends_per_day: int = Field(default=3, ge=0)
    notifications_per_user_per_hour: int = Field(default=20, ge=0)

    # What one client may make the server hold, and for how long. Header limits and
    # the header timeout are the HTTP server's (`python -m app serve`), since they
    # apply before any application code runs; the body limits are the app's.
    http_json_body_max_bytes: int = Field(default=128 * 1024, ge=1024)
    http_header_max_bytes: int = Field(default=16 * 1024, ge=1024)
    http_header_max_count: int = Field(default=100, ge=10)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_keepalive_timeout_seconds: int = Field(default=5, ge=1)
    http_body_idle_timeout_seconds: float = Field(default=30.0, gt=0)
    http_body_min_bytes_per_second: int = Field(default=1024, ge=0)

    # Webhook secret rotation: after a rotation, deliveries are signed with the
    # new secret and, for this long, the previous one too (Standard Webhooks
    # allows several signatures), so receivers can switch without an outage.
    # 0: the previous secret stops signing at once.
    webhook_secret_rotation_window_seconds: int = Field(default=86_400, ge=0)
    # Startup: how long `migrate` and `serve` keep trying to reach the database
    # before `migrate` gives up and `serve` starts without it. A container's
    # PostgreSQL refuses TCP for a while on its first start, when its own
    # healthcheck (over the Unix socket) already passes.
    database_startup_wait_seconds: float = Field(default=60.0, ge=0)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            # Not the parser's message: it may quote the URL, password and all.
            raise ValueError(
                "DATABASE_URL is not a valid URL (driver://user:password@host:port/database)"
            ) from None
        driver = _ASYNC_DRIVERS.get(url.drivername)
        if driver is None:
            raise ValueError(
                "DATABASE_URL must be PostgreSQL (postgresql+asyncpg://) "
                f"or SQLite (sqlite+aiosqlite://), not {url.drivername!r}"
            )
        return url.set(drivername=driver).render_as_string(hide_password=False)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _without_secrets(exc) from None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, _shown(name, value) if name is not None else value

    @field_validator("bootstrap_api_key", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("bootstrap_api_key")
    @classmethod
    def _no_placeholder_key_in_production(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        key = value.get_secret_value() if value is not None else None
        if (
            info.data.get("app_env") == "production"
            and key is not None
            and (is_placeholder(key) or len(key) < _MIN_SECRET_LENGTH)
        ):
            raise ValueError(
                "BOOTSTRAP_API_KEY is a placeholder or shorter than 32 characters; in "
                "production create keys with `python -m app api-keys create`, or set a random "
                "one (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("signup_rate_limit", "api_key_rate_limit")
    @classmethod
    def _rate_in_limits_notation(cls, value: str) -> str:
        parse_rate(value)  # raises ValueError, which pydantic reports with the setting's name
        return value.strip()

    @field_validator("rate_limit_storage_uri")
    @classmethod
    def _known_rate_limit_storage(cls, value: str) -> str:
        scheme = value.split("://", 1)[0]
        if scheme not in {"memory", "redis", "rediss", "redis+unix"}:
            raise ValueError("RATE_LIMIT_STORAGE_URI must be memory:// or redis://host:port")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _addresses_or_networks(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        networks = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or network; "
                    "TRUSTED_PROXIES takes a comma-separated list of them"
                ) from None
        return networks

    @field_validator("welcome_resends_per_day", "notifications_per_user_per_hour", mode="before")
    @classmethod
    def _empty_means_off(cls, value: object) -> object:
        return 0 if value == "" else value

    @model_validator(mode="after")
    def _lease_outlives_timeout(self) -> "Settings":
        # A lease shorter than the timeout would let a second worker claim work
        # that the first is still legitimately doing: a double send.
        if self.task_lease_seconds <= self.task_timeout_seconds:
            raise ValueError("TASK_LEASE_SECONDS must be greater than TASK_TIMEOUT_SECONDS")
        return self

    @model_validator(mode="after")
    def _no_private_webhook_targets_in_production(self) -> "Settings":
        if self.app_env == "production" and self.webhook_allow_private_targets:
            raise ValueError(
                "WEBHOOK_ALLOW_PRIVATE_TARGETS lifts the SSRF guard; it is refused in production"
            )
        return self

    # Cached: read on every request, parsed once.
    @cached_property
    def signup_rate(self) -> list[RateLimitItem]:
        return parse_rate(self.signup_rate_limit)

    @cached_property
    def api_key_rate(self) -> list[RateLimitItem]:
        return parse_rate(self.api_key_rate_limit)

    @property
    def resolved_database_url(self) -> str:
        """The URL in use: DATABASE_URL, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'signup-service.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def mail_dir(self) -> Path:
        """Where the embedded SMTP capture saves messages when SMTP_HOST is unset."""
        return self.data_dir / "mail"


def _secret_kind(name: str) -> str | None:
    """'secret' for a SecretStr setting, 'url' for a URL whose password is one, else None."""
    field = Settings.model_fields.get(name)
    if field is None:
        return None
    if SecretStr in (field.annotation, *get_args(field.annotation)):
        return "secret"
    if any(isinstance(marker, HidesPassword) for marker in field.metadata):
        return "url"
    return None


def _shown(name: str, value: Any) -> Any:
    """A setting's value as errors and the repr may show it."""
    kind = _secret_kind(name)
    if kind == "secret" and value is not None:
        return _HIDDEN
    if kind == "url" and isinstance(value, str):
        try:
            return make_url(value).render_as_string(hide_password=True)
        except (ArgumentError, ValueError):
            return _HIDDEN
    return value


def _without_secrets(exc: ValidationError) -> ValidationError:
    """The same errors, with every secret in their inputs hidden.

    Hiding the input from the message is not enough: `errors()` and `json()`
    still carry it, and anything may log those.
    """
    details: list[Any] = []
    for error in exc.errors():
        value = error["input"]
        if isinstance(value, dict):
            value = {key: _shown(str(key), item) for key, item in value.items()}
        elif error["loc"]:
            value = _shown(str(error["loc"][0]), value)
        details.append({**error, "input": value})
    return ValidationError.from_exception_data(exc.title, details, hide_input=True)
