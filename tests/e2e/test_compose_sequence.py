"""The docker-compose.yml sequence, run by hand: migrate, then serve, as the file declares.

See tests/support/compose.py for what plays each container.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.compose import (
    compose_database,
    run_to_completion,
    service_environment,
    start_service,
    start_worker_service,
)
from tests.support.postgres import PostgresCluster
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually


@pytest.fixture
def compose_db(postgres: PostgresCluster | None) -> Iterator[tuple[PostgresCluster, str]]:
    assert postgres is not None
    with compose_database(postgres) as database:
        yield postgres, database


async def test_compose_sequence_migrates_then_serves_signups_a_worker_mails(
    compose_db: tuple[PostgresCluster, str], smtp: SMTPServer, redis_url: str, tmp_path: Path
) -> None:
    postgres, database = compose_db
    migrate_env = service_environment("migrate", postgres, smtp, tmp_path / "data", redis_url)
    run_to_completion("migrate", migrate_env, tmp_path)
    assert postgres.psql("SELECT count(*) FROM alembic_version", database=database) == "1"

    app_env = service_environment("app", postgres, smtp, tmp_path / "data", redis_url)
    server = start_service("app", app_env, tmp_path)
    worker_env = service_environment("worker", postgres, smtp, tmp_path / "worker", redis_url)
    worker = start_worker_service("worker", worker_env, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            response = await http.post(
                "/signups", json={"email": "compose@example.com", "name": "Compose"}
            )
            assert response.status_code == 201
            [message] = await eventually(lambda: smtp.messages, what="the welcome email")
            assert message.rcpt_tos == ["compose@example.com"]
            assert (await http.get("/readyz")).json()["status"] == "ready"
    finally:
        server.stop()
        worker.stop()
    assert '"level": "INFO"' in server.log()  # LOG_FORMAT=json from the compose file
