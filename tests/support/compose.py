"""docker-compose.yml's services, run by hand on this machine (no Docker engine needed).

A real PostgreSQL plays `db`, with the compose database's role and name; a real
Redis plays `redis`; a real SMTP server plays `mail`, with the one part of
Mailpit's HTTP API the README uses; the `migrate` and `app` services run their
own commands with their own environment, over `.env.example` when a test asks
for `cp .env.example .env`, and with `${NAME:-default}` interpolated as compose
does (from `.env`, if there is one). Only what a container network provides is
mapped onto this machine: the host names `db`, `redis` and `mail`, `/data`, and
the published ports.
"""

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from tests.support.postgres import PostgresCluster, free_port
from tests.support.server import PROJECT_ROOT, ServerProcess, WorkerProcess
from tests.support.smtp import SMTPServer

SERVICES: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())[
    "services"
]


@contextmanager
def compose_database(postgres: PostgresCluster) -> Iterator[str]:
    """The `db` service's role and database on a running server; yields the database name."""
    db = SERVICES["db"]["environment"]
    postgres.psql(f"CREATE ROLE {db['POSTGRES_USER']} LOGIN PASSWORD '{db['POSTGRES_PASSWORD']}'")
    postgres.psql(f"CREATE DATABASE {db['POSTGRES_DB']} OWNER {db['POSTGRES_USER']}")
    try:
        yield db["POSTGRES_DB"]
    finally:
        postgres.psql(f"DROP DATABASE {db['POSTGRES_DB']} WITH (FORCE)")
        postgres.psql(f"DROP ROLE {db['POSTGRES_USER']}")


def service_environment(
    service: str,
    postgres: PostgresCluster,
    smtp: SMTPServer,
    data_dir: Path,
    redis_url: str,
    *,
    dotenv: bool = True,
) -> dict[str, str]:
    """The service's environment; `dotenv`: as after `cp .env.example .env`."""
    dotenv_file = {
        name: value
        for name, value in dotenv_values(PROJECT_ROOT / ".env.example").items()
        if value is not None and dotenv
    }
    env = dict(dotenv_file)
    for name, value in SERVICES[service]["environment"].items():
        env[name] = interpolate(value, dotenv_file)
    env["DATABASE_URL"] = env["DATABASE_URL"].replace("@db:5432", f"@127.0.0.1:{postgres.port}")
    env["RATE_LIMIT_STORAGE_URI"] = env["RATE_LIMIT_STORAGE_URI"].replace(
        "redis://redis:6379", redis_url
    )
    env["SMTP_HOST"], env["SMTP_PORT"] = smtp.host, str(smtp.port)
    env["DATA_DIR"] = str(data_dir)
    if "WORKER_METRICS_PORT" in env:  # the container's own port, here a free one
        env["WORKER_METRICS_PORT"] = str(free_port())
        env["WORKER_METRICS_HOST"] = "127.0.0.1"
    return env


def interpolate(value: str, dotenv_file: dict[str, str]) -> str:
    """`${NAME:-default}` as compose fills it in: from `.env` (a clean shell has none)."""
    return re.sub(
        r"\$\{(\w+):-([^}]*)\}",
        lambda match: dotenv_file.get(match.group(1)) or match.group(2),
        value,
    )


def run_to_completion(service: str, env: dict[str, str], cwd: Path) -> None:
    """A one-shot service's command, as compose runs it; fails the test if it fails."""
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


def start_service(service: str, env: dict[str, str], cwd: Path) -> ServerProcess:
    """A long-running service's command, on 127.0.0.1 and a free port instead of 0.0.0.0:8000."""
    command = [sys.executable, *SERVICES[service]["command"][1:], "--host", "127.0.0.1"]
    return ServerProcess(
        {**env, "PYTHONPATH": str(PROJECT_ROOT)}, cwd / f"{service}.log", command=command, cwd=cwd
    ).start()


def start_worker_service(service: str, env: dict[str, str], cwd: Path) -> WorkerProcess:
    """A worker service's command, as compose runs it, started and listening."""
    command = [sys.executable, *SERVICES[service]["command"][1:]]
    worker = WorkerProcess(
        {**env, "PYTHONPATH": str(PROJECT_ROOT)}, cwd / f"{service}.log", command=command, cwd=cwd
    )
    return worker.start()


@contextmanager
def mailpit_api(smtp: SMTPServer) -> Iterator[str]:
    """`GET /api/v1/message/latest`, as Mailpit answers it, over what `smtp` received.

    Mailpit itself cannot run here (it ships as a container image or a binary
    download); this is the one route of its API the README's tour reads.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            messages = smtp.messages
            if self.path != "/api/v1/message/latest" or not messages:
                self.send_error(404)
                return
            message = messages[-1].message
            body = message.get_body(("plain",))
            document = {
                "MessageID": str(message["Message-ID"]).strip().strip("<>"),
                "From": {"Name": "", "Address": str(message["From"])},
                "To": [{"Name": "", "Address": str(message["To"])}],
                "Subject": str(message["Subject"]),
                "Text": body.get_content() if body is not None else "",
            }
            payload = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
