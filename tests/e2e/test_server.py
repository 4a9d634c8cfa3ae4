"""The service as a real uvicorn process: the response never waits for the mail server."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import truncate_all
from tests.support.postgres import PostgresCluster
from tests.support.server import ServerProcess
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually, eventually_async


@pytest.fixture
def server_env(
    postgres: PostgresCluster | None, postgres_url: str, smtp: SMTPServer, tmp_path: Path
) -> dict[str, str]:
    assert postgres is not None
    truncate_all(postgres, postgres_url)
    return {
        "DATABASE_URL": postgres_url,
        "DATA_DIR": str(tmp_path / "data"),
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "TASK_TIMEOUT_SECONDS": "30",
        "TASK_LEASE_SECONDS": "60",
    }


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(server_env, tmp_path / "server.log").start()
    try:
        yield process
    finally:
        process.stop()


async def test_signup_answers_while_the_smtp_server_holds_the_message(
    server: ServerProcess, smtp: SMTPServer
) -> None:
    smtp.stall()  # no DATA command will be answered until we say so

    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        response = await http.post("/signups", json={"email": "ada@example.com", "name": "Ada"})
        assert response.status_code == 201
        user_url = response.headers["location"]
        await eventually(lambda: smtp.data_commands >= 1, what="the send to start")
        during = (await http.get(user_url)).json()["welcome_email"]

        smtp.unstall()

        async def settled() -> dict[str, object]:
            state: dict[str, object] = (await http.get(user_url)).json()["welcome_email"]
            return state if state["status"] == "succeeded" else {}

        after = await eventually_async(settled, timeout=20, what="the welcome email to succeed")

    assert during["status"] == "running"
    assert after["attempts"] == 2  # the stalled attempt was answered 451, the next one sent
    assert len(smtp.messages) == 1
