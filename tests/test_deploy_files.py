"""docker-compose.yml and the Dockerfile, checked by reading them (no Docker engine needed)."""

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from app.__main__ import build_parser
from app.core.config import Settings
from tests.support.server import PROJECT_ROOT

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()
APP_SERVICES = ["migrate", "app", "app-2", "app-3"]


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


def test_replicas_profile_adds_replicas_sharing_the_database_and_data() -> None:
    for name in ("app-2", "app-3"):
        assert SERVICES[name]["profiles"] == ["replicas"]
        assert SERVICES[name]["environment"] == SERVICES["app"]["environment"]
        assert SERVICES[name]["volumes"] == SERVICES["app"]["volumes"] == ["appdata:/data"]


def test_stop_grace_outlasts_the_shutdown_grace() -> None:
    grace = Settings.model_fields["shutdown_grace_seconds"].default

    assert int(SERVICES["app"]["stop_grace_period"].rstrip("s")) > grace


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
