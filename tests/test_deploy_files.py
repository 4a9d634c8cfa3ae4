"""docker-compose.yml and the Dockerfile, checked by reading them (no Docker engine needed)."""

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from app.__main__ import build_parser
from app.core.config import Settings
from tests.support.postgres import free_port
from tests.support.server import PROJECT_ROOT, ServerProcess

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()
APP_SERVICES = ["migrate", "app", "worker", "app-2", "worker-2"]


def cli_commands() -> set[str]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return set(subparsers.choices)  # type: ignore[arg-type]


def test_compose_has_database_mail_redis_migration_and_app() -> None:
    assert {"db", "mail", "redis", "migrate", "app"} <= set(SERVICES)
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert "profiles" not in SERVICES["redis"]  # every replica, the first included, uses it
    assert SERVICES["db"]["image"].startswith("postgres:")
    assert SERVICES["mail"]["image"].startswith("axllent/mailpit:")
    assert "8025:8025" in SERVICES["mail"]["ports"]
    assert "8000:8000" in SERVICES["app"]["ports"]
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["db"]["volumes"]


def test_services_start_in_order_gated_on_health_and_the_migration() -> None:
    assert SERVICES["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert SERVICES["app"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "mail": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in ("db", "mail", "redis", "app"):
        assert SERVICES[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(SERVICES["app"]["healthcheck"]["test"])


@pytest.mark.parametrize("service", APP_SERVICES)
def test_commands_name_real_cli_entry_points(service: str) -> None:
    command = SERVICES[service]["command"]

    assert command[:3] == ["python", "-m", "app"]
    assert command[3] in cli_commands()
    build_parser().parse_args(command[3:])  # exits on an unknown option


@pytest.mark.parametrize("service", APP_SERVICES)
def test_replicas_share_rate_limits_through_the_compose_redis(service: str) -> None:
    assert SERVICES[service]["environment"]["RATE_LIMIT_STORAGE_URI"] == "redis://redis:6379"


def test_compose_gives_the_tour_a_key_that_dotenv_can_replace() -> None:
    example = dotenv_values(PROJECT_ROOT / ".env.example")["BOOTSTRAP_API_KEY"]

    assert SERVICES["app"]["environment"]["BOOTSTRAP_API_KEY"] == (
        f"${{BOOTSTRAP_API_KEY:-{example}}}"
    )
    with pytest.raises(ValueError, match="BOOTSTRAP_API_KEY is a placeholder"):
        Settings(_env_file=None, app_env="production", bootstrap_api_key=example)


@pytest.mark.parametrize("service", APP_SERVICES)
def test_environment_names_are_settings(service: str) -> None:
    names = {name.upper() for name in Settings.model_fields}

    assert set(SERVICES[service]["environment"]) <= names


def test_environment_points_the_app_at_the_compose_database_and_mail() -> None:
    env = SERVICES["app"]["environment"]
    db = SERVICES["db"]["environment"]

    assert env["DATABASE_URL"] == (
        f"postgresql+asyncpg://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}"
        f"@db:5432/{db['POSTGRES_DB']}"
    )
    assert (env["SMTP_HOST"], env["SMTP_PORT"]) == ("mail", "1025")
    assert SERVICES["app"]["env_file"] == [{"path": ".env", "required": False}]


def role(service: str) -> str:
    return str(SERVICES[service]["command"][3])


def test_web_processes_and_workers_are_separate_services_and_only_the_database_has_a_volume() -> (
    None
):
    web = sorted(name for name in SERVICES if "command" in SERVICES[name] and role(name) == "serve")
    workers = sorted(
        name for name in SERVICES if "command" in SERVICES[name] and role(name) == "worker"
    )

    assert (web, workers) == (["app", "app-2"], ["worker", "worker-2"])
    for name in web:
        assert SERVICES[name]["environment"]["SERVE_BACKGROUND_WORK"] == "false"
    for name in workers:
        assert "SERVE_BACKGROUND_WORK" not in SERVICES[name]["environment"]
        assert SERVICES[name]["healthcheck"] == {"disable": True}  # no HTTP to ask
    for name in web + workers:
        assert "volumes" not in SERVICES[name], name
    assert set(COMPOSE["volumes"]) == {"pgdata"}


def test_the_replicas_profile_adds_a_second_web_process_and_a_second_worker() -> None:
    profiled = {name for name in SERVICES if "profiles" in SERVICES[name]}

    assert profiled == {"app-2", "worker-2"}
    for name in profiled:
        assert SERVICES[name]["profiles"] == ["replicas"]
    assert SERVICES["app-2"]["environment"] == SERVICES["app"]["environment"]
    assert SERVICES["worker-2"]["environment"] == SERVICES["worker"]["environment"]


def test_stop_grace_outlasts_the_shutdown_grace() -> None:
    grace = Settings.model_fields["shutdown_grace_seconds"].default

    for name in ("app", "worker", "app-2", "worker-2"):
        assert int(SERVICES[name]["stop_grace_period"].rstrip("s")) > grace


def test_dockerfile_is_multi_stage_frozen_slim_and_unprivileged() -> None:
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert len(stages) == 2
    assert all("slim" in image for image in stages)
    assert "uv sync --frozen --no-dev" in DOCKERFILE
    user = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert user
    assert user[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n?.*readyz", DOCKERFILE, re.M)


def test_dockerfile_cmd_is_exec_form_naming_a_real_command() -> None:
    cmd = re.findall(r"^CMD (.+)$", DOCKERFILE, re.M)[-1]

    assert cmd.startswith("[")  # exec form: SIGTERM reaches the server, not a shell
    argv = yaml.safe_load(cmd)
    assert argv[:3] == ["python", "-m", "app"]
    build_parser().parse_args(argv[3:])
    assert argv == SERVICES["app"]["command"]


def test_dockerignore_keeps_only_what_the_image_needs() -> None:
    lines = (PROJECT_ROOT / ".dockerignore").read_text().split()
    kept = {line[1:].rstrip("/") for line in lines if line.startswith("!")}

    assert kept == {"pyproject.toml", "uv.lock", "alembic.ini", "migrations", "app"}
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M):
        for source in shlex.split(copied):
            assert Path(source).name in kept, source


@pytest.mark.parametrize("service", APP_SERVICES)
def test_the_local_image_is_built_never_pulled(service: str) -> None:
    assert SERVICES[service]["image"] == "signup-service:local"
    assert SERVICES[service]["pull_policy"] == "build"


def healthchecks() -> dict[str, list[str]]:
    """The app's healthcheck commands, as compose and the image's HEALTHCHECK run them."""
    compose = SERVICES["app"]["healthcheck"]["test"]
    assert compose[0] == "CMD"
    instruction = re.search(r"^HEALTHCHECK .*\\\n\s+CMD (\[.+\])$", DOCKERFILE, re.M)
    assert instruction is not None
    return {"compose": compose[1:], "Dockerfile": yaml.safe_load(instruction.group(1))}


@pytest.fixture(scope="module")
def ready_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("healthcheck")
    server = ServerProcess(
        {"DATA_DIR": str(folder / "data"), "LOG_LEVEL": "WARNING"}, folder / "server.log"
    )
    yield server.start()
    server.stop()


def run_healthcheck(command: list[str], port: int, env: dict[str, str]) -> int:
    """Run it as the container would, against `port` instead of 8000."""
    assert command[0] == "python"
    argv = [sys.executable, *(part.replace(":8000/", f":{port}/") for part in command[1:])]
    environment = {"PATH": os.environ.get("PATH", ""), **env}
    result = subprocess.run(argv, env=environment, capture_output=True, timeout=30, check=False)
    return result.returncode


@pytest.mark.parametrize("where", ["compose", "Dockerfile"])
def test_the_healthcheck_reaches_its_own_container_past_a_proxy_in_the_environment(
    where: str, ready_server: ServerProcess
) -> None:
    # A proxy nothing listens on: a request sent through it fails.
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    proxied = dict.fromkeys(("HTTP_PROXY", "http_proxy", "ALL_PROXY"), dead_proxy)
    through_proxy = (
        "import sys, urllib.request; "
        f"urllib.request.urlopen('{ready_server.base_url}/readyz', timeout=2)"
    )

    status = run_healthcheck(healthchecks()[where], ready_server.port, proxied)

    assert status == 0
    # The environment is hostile: urllib's defaults would have gone through the proxy.
    plain = subprocess.run(
        [sys.executable, "-c", through_proxy],
        env=proxied,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert plain.returncode != 0


@pytest.mark.parametrize("where", ["compose", "Dockerfile"])
def test_the_healthcheck_fails_when_nothing_answers(where: str) -> None:
    assert run_healthcheck(healthchecks()[where], free_port(), {}) != 0
