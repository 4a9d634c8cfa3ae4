"""schemathesis against the OpenAPI schema of a real server: every phase, every check, green.

Examples, coverage, fuzzing and the stateful phase (chains of calls along the
links it infers: sign up, read, change, notify, delete, read again), with
every check schemathesis has: no 5xx, responses as documented (status,
content type, headers, body), valid requests accepted and invalid ones
refused, `Allow` on 405, resources gone after DELETE and there after
creation, and the admin routes refusing requests without credentials.

The server is the production setup: PostgreSQL, real SMTP, webhooks to a
real receiver. tests/support/fuzz_hooks.py says what is adjusted, and why.
200 examples per operation take about a minute here; the CLI rather than
the pytest plugin, because it is what a user would run.
"""

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.keys import NO_RATE_LIMITS, SERVER_KEY
from tests.support.postgres import PostgresCluster
from tests.support.server import PROJECT_ROOT, ServerProcess
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually_async
from tests.support.webhooks import WebhookReceiver

MAX_EXAMPLES = 200
SEED = 20261121

# The fuzzer's credentials: the one place they are set, for the server and the requests.
# A key with every scope, and no rate limits: a 429 would stop the fuzzer reaching the
# route behind it.
SERVER_CREDENTIALS = {"BOOTSTRAP_API_KEY": SERVER_KEY, **NO_RATE_LIMITS}
AUTHORIZATION = f"Bearer {SERVER_KEY}"


async def failed_welcome_email(server: ServerProcess, smtp: SMTPServer) -> str:
    """A dead letter for the retry route to work on: a welcome email refused with 550."""
    smtp.reply_to_data("550 5.1.1 no such mailbox")
    headers = {"Authorization": AUTHORIZATION}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
        created = await http.post("/signups", json={"email": "gone@example.com", "name": "Gone"})
        user_id: str = created.json()["id"]

        async def failed() -> bool:
            user = (await http.get(f"/users/{user_id}")).json()
            return bool(user["welcome_email"]["status"] == "failed")

        await eventually_async(failed, what="the welcome email to fail")
    return user_id


async def test_every_phase_and_every_check_pass_and_nothing_is_a_server_error(
    database: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    env = {
        "DATABASE_URL": database[1],
        "DATA_DIR": str(tmp_path / "data"),
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "WEBHOOK_TIMEOUT_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
        **SERVER_CREDENTIALS,
    }
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        dead_letter = await failed_welcome_email(server, smtp)
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            "[[operations]]\n"
            'include-path = "/admin/tasks/{kind}/{task_id}/retry"\n'
            f'parameters = {{ "path.kind" = "welcome_email", "path.task_id" = "{dead_letter}" }}\n'
        )
        result = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
                f"{server.base_url}/openapi.json",
                "--phases", "examples,coverage,fuzzing,stateful",
                "--checks", "all",
                "--header", f"Authorization: {AUTHORIZATION}",
                "--max-examples", str(MAX_EXAMPLES),
                "--seed", str(SEED),
                "--generation-database", "none",
                "--report-dir", str(tmp_path / "reports"),
            ],
            cwd=tmp_path,  # schemathesis keeps its state in the working directory
            env={
                "PATH": "",
                "PYTHONPATH": str(PROJECT_ROOT),
                "SCHEMATHESIS_HOOKS": "tests.support.fuzz_hooks",
                "FUZZ_WEBHOOK_URL": receiver.url,
            },
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )  # fmt: skip
    finally:
        server.stop()

    report = result.stdout[-8000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in result.stdout, report
    assert "Internal Server Error" not in server.log()
