"""The first connection to a database that is not up yet: `migrate` and `serve` wait for it.

A container's PostgreSQL, on its first start, runs a server on its Unix
socket only while its init scripts run: its healthcheck passes and TCP is
refused. Here a real PostgreSQL server starts on a port only after the
service is already trying to reach it.
"""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core import migrations
from tests.support.postgres import PostgresCluster, PostgresUnavailable, free_port
from tests.support.server import PROJECT_ROOT, ServerProcess
from tests.support.waiting import eventually

WAITING = "database not reachable yet"


@pytest.fixture
def late_postgres(postgres: PostgresCluster | None) -> Iterator[PostgresCluster]:
    """A PostgreSQL server initialised but not started: the test starts it when it wants."""
    if postgres is None:
        pytest.skip("PostgreSQL server binaries not installed")
    try:
        cluster = PostgresCluster(port=free_port())
    except PostgresUnavailable as exc:  # pragma: no cover - the session fixture found them
        pytest.skip(str(exc))
    yield cluster
    cluster.remove()


def command(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    environment = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1", **env}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app", *args],
            env=environment,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_migrate_waits_for_a_database_that_starts_late_then_migrates(
    late_postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = late_postgres.url("postgres")
    log = tmp_path / "migrate.log"
    migrate = command(
        ["migrate"], {"DATABASE_URL": url, "DATABASE_STARTUP_WAIT_SECONDS": "60"}, log
    )
    try:
        await eventually(lambda: WAITING in log.read_text(), timeout=30, what="migrate to wait")
        assert migrate.poll() is None  # still trying, not failed

        late_postgres.start()

        code = await asyncio.to_thread(migrate.wait, 60)
    finally:
        if migrate.poll() is None:
            migrate.kill()
    output = log.read_text()
    assert code == 0, output
    assert "database reachable after" in output
    assert f"database migrated to {migrations.head_revision()}" in output
    assert "Traceback" not in output


async def test_migrate_gives_up_after_the_wait_with_one_error_line(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/nothing"
    log = tmp_path / "migrate.log"
    started = time.monotonic()

    migrate = command(["migrate"], {"DATABASE_URL": url, "DATABASE_STARTUP_WAIT_SECONDS": "1"}, log)
    code = await asyncio.to_thread(migrate.wait, 60)

    output = log.read_text()
    assert code == 1
    assert time.monotonic() - started < 30
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert "database still not reachable after 1s" in errors[0]


async def test_serve_waits_for_the_database_before_it_starts_its_loops(
    late_postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = late_postgres.url("postgres")
    late_postgres.start()  # migrated already, as compose runs `migrate` first; then down
    await asyncio.to_thread(migrations.upgrade, url)
    late_postgres.stop()
    env = {
        "DATABASE_URL": url,
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_STARTUP_WAIT_SECONDS": "60",
        "RECOVERY_INTERVAL_SECONDS": "0.5",
    }
    server = ServerProcess(env, tmp_path / "server.log")
    try:
        server_started = asyncio.create_task(asyncio.to_thread(server.start, timeout=90))
        await eventually(lambda: WAITING in server.log(), timeout=30, what="serve to wait")

        late_postgres.start()

        await server_started
    finally:
        server.stop()
    output = server.log()
    assert "database reachable after" in output
    assert "recovery pass failed" not in output
    assert "starting without the database" not in output
