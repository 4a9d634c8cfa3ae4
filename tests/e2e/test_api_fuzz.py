"""schemathesis against the OpenAPI schema of a real server: no 5xx, every response as documented.

The CLI rather than the pytest plugin: the plugin's lazy fixtures do not work
with the pytest in use here, and the CLI is also what a user would run.
"""

import subprocess
import sys
from pathlib import Path

from tests.support.keys import SERVER_KEY
from tests.support.server import ServerProcess

# Responses must conform to the schema. positive_data_acceptance is not asked
# for: a schema-valid string is not always a valid email address.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def test_every_operation_answers_as_documented_and_never_5xx(tmp_path: Path) -> None:
    """The embedded default (SQLite, local mail capture), called with a key holding every
    scope, and no rate limits: a 429 would stop the fuzzer reaching the route behind it."""
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "BOOTSTRAP_API_KEY": SERVER_KEY,
        "API_KEY_RATE_LIMIT": "0",
        "WELCOME_RESENDS_PER_DAY": "0",
        "NOTIFICATIONS_PER_USER_PER_HOUR": "0",
        "LOG_LEVEL": "WARNING",
    }
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        result = subprocess.run(
            [
                sys.executable, "-m", "schemathesis.cli", "run",
                f"{server.base_url}/openapi.json",
                "--checks", CHECKS,
                "--header", f"Authorization: Bearer {SERVER_KEY}",
                "--max-examples", "30",
                "--seed", "20261121",
                "--generation-database", "none",
                "--report-dir", str(tmp_path / "reports"),
            ],
            cwd=tmp_path,  # schemathesis keeps its state in the working directory
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )  # fmt: skip
    finally:
        server.stop()

    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "Internal Server Error" not in server.log()
