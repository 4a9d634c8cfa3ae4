"""The README's tour, run command by command against the compose sequence, and checked."""

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.compose import (
    compose_database,
    mailpit_api,
    run_to_completion,
    service_environment,
    start_service,
    start_worker_service,
)
from tests.support.postgres import PostgresCluster
from tests.support.server import PROJECT_ROOT
from tests.support.smtp import SMTPServer

README = (PROJECT_ROOT / "README.md").read_text()


def tour_script() -> str:
    """The first shell block of the README's "A tour" section."""
    start = README.index("\n## A tour\n")
    section = README[start : README.index("\n## ", start + 1)]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


@pytest.fixture
def compose_db(postgres: PostgresCluster | None) -> Iterator[tuple[PostgresCluster, str]]:
    assert postgres is not None
    with compose_database(postgres) as database:
        yield postgres, database


@pytest.mark.parametrize("dotenv", [False, True], ids=["without-dotenv", "with-dotenv"])
def test_every_tour_command_succeeds_and_does_what_it_says(
    compose_db: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    redis_url: str,
    tmp_path: Path,
    dotenv: bool,
) -> None:
    """As written, after `docker compose up`, with or without `cp .env.example .env`."""
    if shutil.which("jq") is None:
        pytest.fail("the README's tour needs jq (`apt-get install jq`)")
    postgres, database = compose_db
    data = tmp_path / "data"

    def environment(service: str) -> dict[str, str]:
        return service_environment(service, postgres, smtp, data, redis_url, dotenv=dotenv)

    run_to_completion("migrate", environment("migrate"), tmp_path)
    server = start_service("app", environment("app"), tmp_path)
    # Compose starts the worker beside the web process: it sends what the tour waits for.
    worker_env = {**environment("worker"), "DATA_DIR": str(tmp_path / "worker")}
    worker = start_worker_service("worker", worker_env, tmp_path)
    try:
        with mailpit_api(smtp) as mailpit:
            # The published ports of `app` and `mail`, mapped onto this machine.
            script = tour_script().replace(
                "localhost:8000", server.base_url.removeprefix("http://")
            )
            script = script.replace("localhost:8025", mailpit)
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
    finally:
        server.stop()
        worker.stop()

    output = result.stdout
    assert result.returncode == 0, f"{output[-3000:]}\n{result.stderr[-3000:]}"
    welcome = json.loads(output[output.index("{") : output.index("}") + 1])
    assert welcome["status"] == "succeeded"
    assert '"Subject": "Welcome to Signup Service"' in output
    assert '"To": "ada@example.com"' in output
    assert '"rows_imported": 2' in output
    assert '"rows_rejected": 1' in output
    assert "4,not-an-email,Mallory,email: An email address must have an @-sign." in output
    assert '"action":"notification.created"' in output
    assert '"actor":"bootstrap"' in output  # the key's name
    assert 'signup_tasks_due{kind="notification_email"} 0.0' in output
    notified = postgres.psql("SELECT status FROM notifications", database=database)
    assert notified == "succeeded"
