"""Fixtures for tests that run the service as real processes against PostgreSQL."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.core import migrations
from tests.conftest import truncate_all
from tests.support.keys import SERVER_KEY
from tests.support.postgres import PostgresCluster
from tests.support.server import ServerProcess, WorkerProcess
from tests.support.smtp import SMTPServer


@pytest.fixture
def database(postgres: PostgresCluster | None, postgres_url: str) -> tuple[PostgresCluster, str]:
    """The suite's PostgreSQL server and its test database, emptied."""
    assert postgres is not None
    truncate_all(postgres, postgres_url)
    return postgres, postgres_url


@pytest.fixture
def own_postgres(postgres: PostgresCluster | None) -> Iterator[tuple[PostgresCluster, str]]:
    """A PostgreSQL server of this test's own, since the test stops it."""
    if postgres is None:
        pytest.skip("PostgreSQL server binaries not installed")
    cluster = PostgresCluster()
    cluster.start()
    url = cluster.create_database("outage")
    migrations.upgrade(url)
    yield cluster, url
    cluster.remove()


@pytest.fixture
def server_env(
    database: tuple[PostgresCluster, str], smtp: SMTPServer, tmp_path: Path
) -> dict[str, str]:
    return {
        "DATABASE_URL": database[1],
        "DATA_DIR": str(tmp_path / "data"),
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "TASK_TIMEOUT_SECONDS": "30",
        "TASK_LEASE_SECONDS": "60",
        "RECOVERY_INTERVAL_SECONDS": "0.5",
        "RECOVERY_GRACE_SECONDS": "1",
        "LOG_LEVEL": "INFO",
        # Every scope; `server.client()` sends it.
        "BOOTSTRAP_API_KEY": SERVER_KEY,
    }


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with `start_server(env)`; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str], *args: str) -> ServerProcess:
        log = tmp_path / f"server-{len(started)}.log"
        server = ServerProcess(env, log, args=args)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `python -m app worker` processes with `start_worker(env)`; all are stopped at
    the end of the test."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str]) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def server(server_env: dict[str, str], start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server(server_env)
