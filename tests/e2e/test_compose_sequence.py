"""The docker-compose.yml sequence, run by hand: no Docker engine is needed to prove it.

A real PostgreSQL with the compose database's role and name, a real SMTP server
in Mailpit's place, then the `migrate` and `app` services' commands exactly as
the compose file declares them, with its environment over `.env.example` (as
`cp .env.example .env` gives). Only what a container network provides is
mapped onto this machine: the host names `db` and `mail`, and `/data`.
"""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dotenv import dotenv_values

from tests.support.postgres import PostgresCluster
from tests.support.server import PROJECT_ROOT, ServerProcess
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually

SERVICES: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())[
    "services"
]


@pytest.fixture
def compose_db(postgres: PostgresCluster | None) -> Iterator[tuple[PostgresCluster, str]]:
    """The compose `db` service's role and database, on the suite's PostgreSQL server."""
    assert postgres is not None
    db = SERVICES["db"]["environment"]
    postgres.psql(f"CREATE ROLE {db['POSTGRES_USER']} LOGIN PASSWORD '{db['POSTGRES_PASSWORD']}'")
    postgres.psql(f"CREATE DATABASE {db['POSTGRES_DB']} OWNER {db['POSTGRES_USER']}")
    yield postgres, db["POSTGRES_DB"]
    postgres.psql(f"DROP DATABASE {db['POSTGRES_DB']} WITH (FORCE)")
    postgres.psql(f"DROP ROLE {db['POSTGRES_USER']}")


def service_environment(
    service: str, postgres: PostgresCluster, smtp: SMTPServer, data_dir: Path
) -> dict[str, str]:
    env = {k: v for k, v in dotenv_values(PROJECT_ROOT / ".env.example").items() if v is not None}
    env.update(SERVICES[service]["environment"])
    env["DATABASE_URL"] = env["DATABASE_URL"].replace("@db:5432", f"@127.0.0.1:{postgres.port}")
    env["SMTP_HOST"], env["SMTP_PORT"] = smtp.host, str(smtp.port)
    env["DATA_DIR"] = str(data_dir)
    return env


def run_service_command(service: str, env: dict[str, str], cwd: Path) -> None:
    command = SERVICES[service]["command"]
    assert command[:2] == ["python", "-m"]
    result = subprocess.run(
        [sys.executable, *command[1:]],
        env={**env, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)},
        cwd=cwd,  # not the project folder: no developer .env may leak in
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]


async def test_compose_sequence_migrates_then_serves_signups_that_mail_arrives_for(
    compose_db: tuple[PostgresCluster, str], smtp: SMTPServer, tmp_path: Path
) -> None:
    postgres, database = compose_db
    migrate_env = service_environment("migrate", postgres, smtp, tmp_path / "data")
    run_service_command("migrate", migrate_env, tmp_path)
    assert postgres.psql("SELECT count(*) FROM alembic_version", database=database) == "1"

    app_env = service_environment("app", postgres, smtp, tmp_path / "data")
    command = [sys.executable, *SERVICES["app"]["command"][1:], "--host", "127.0.0.1"]
    server = ServerProcess(
        {**app_env, "PYTHONPATH": str(PROJECT_ROOT)}, tmp_path / "app.log",
        command=command, cwd=tmp_path,
    ).start()  # fmt: skip
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
    assert '"level": "INFO"' in server.log()  # LOG_FORMAT=json from the compose file
