"""Fixtures: a real PostgreSQL server and SQLite files migrated by Alembic, a real SMTP
server, and the app over ASGI. Each test starts from empty tables.

`client` carries an API key with every scope, so a test about what a route does
need not care who may call it. Tests about who may call it use `anonymous_client`,
`client_with` (a key with chosen scopes) and `issue_key`.
"""

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core import migrations
from app.core.config import Settings
from app.main import create_app
from app.models import Base
from app.services.api_keys import Scope
from tests.support.keys import api_client, issue_key
from tests.support.postgres import PostgresCluster, PostgresUnavailable
from tests.support.redis import RedisServer, RedisUnavailable
from tests.support.smtp import SMTPServer
from tests.support.webhooks import WebhookReceiver

# The tests configure the service explicitly; a developer's environment must not leak in.
for _name in Settings.model_fields:
    os.environ.pop(_name.upper(), None)

REQUIRE_POSTGRES = bool(os.environ.get("REQUIRE_POSTGRES") or os.environ.get("CI"))
REQUIRE_REDIS = bool(os.environ.get("REQUIRE_REDIS") or os.environ.get("CI"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster | None]:
    """The suite's own PostgreSQL server, or None (tests needing it skip, unless on CI)."""
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(str(exc))
        yield None
        return
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresCluster | None) -> str:
    if postgres is None:
        pytest.skip("PostgreSQL server binaries not installed")
    url = postgres.create_database("signup_test")
    migrations.upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The suite's own Redis server; tests needing it skip without one, unless on CI."""
    try:
        server = RedisServer()
    except RedisUnavailable as exc:
        if REQUIRE_REDIS:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The suite's Redis, emptied: each test starts with no counts."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrations.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


def truncate_all(postgres: PostgresCluster, url: str) -> None:
    tables = ", ".join(f'"{name}"' for name in Base.metadata.tables)
    postgres.psql(f"TRUNCATE {tables} CASCADE", database=url.rsplit("/", 1)[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test runs once on SQLite (the embedded default) and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "signup-service.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    truncate_all(request.getfixturevalue("postgres"), url)
    return url


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A webhook receiver on loopback (tests delivering to it allow private targets)."""
    with WebhookReceiver() as server:
        yield server


def make_settings(
    database_url: str, smtp: SMTPServer, data_dir: Path, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "task_timeout_seconds": 5.0,
        "task_lease_seconds": 10.0,
        "task_max_attempts": 5,
        "task_backoff_base_seconds": 0.01,
        "task_backoff_max_seconds": 0.05,
        "task_inline_retry_seconds": 2.0,
        # Off unless a test turns it on: a pass racing the test's own calls
        # would make outcomes depend on timing.
        "recovery_interval_seconds": 0,
        # A database the test made unreachable stays so: no point waiting for it.
        "database_startup_wait_seconds": 0,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change settings for its tests."""
    return {}


@pytest.fixture
def settings(
    database_url: str, smtp: SMTPServer, tmp_path: Path, settings_overrides: dict[str, Any]
) -> Settings:
    return make_settings(database_url, smtp, tmp_path / "data", **settings_overrides)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


# The name the `client` fixture's key has: the actor of the audit entries it causes.
CLIENT_KEY_NAME = "test-client"


@pytest.fixture
async def client_key(app: FastAPI) -> str:
    """The key `client` sends: every scope."""
    return await issue_key(app, CLIENT_KEY_NAME)


@pytest.fixture
async def client(app: FastAPI, client_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(app, client_key) as http:
        yield http


@pytest.fixture
async def anonymous_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI without any key."""
    async with api_client(app) as http:
        yield http


ClientWith = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def client_with(app: FastAPI) -> AsyncIterator[ClientWith]:
    """`await client_with(Scope.USERS_READ, ...)`: a client whose new key holds just those
    scopes (none at all, if none are given)."""
    async with contextlib.AsyncExitStack() as stack:
        issued = 0

        async def make(*scopes: Scope, name: str | None = None) -> httpx.AsyncClient:
            nonlocal issued
            issued += 1
            key = await issue_key(app, name or f"scoped-{issued}", scopes)
            return await stack.enter_async_context(api_client(app, key))

        yield make
