"""API keys: the CLI on both databases, digests at rest, the bootstrap key, last use.

The CLI runs in this process here (its own `main`, with the test's environment),
and as a real process against running servers in tests/e2e/test_security.py.
"""

import asyncio
import contextlib
import logging
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

import app.__main__ as cli_module
from app.core.config import Settings
from app.main import create_app
from app.models import ApiKey, AuditEntry
from app.models.base import utcnow
from app.repositories import api_keys as api_keys_repo
from app.services import api_keys
from app.services.api_keys import ALL_SCOPES, KeyResolver, Scope
from tests.support.keys import api_client, issue_key
from tests.support.postgres import PostgresCluster

KEY_FORMAT = re.compile(r"^ssk_[A-Za-z0-9]{43}$")
BOOTSTRAP = "ssk_BootstrapForTheseTests0123456789abcdefghijk"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    database_url: str,
    tmp_path: Path,
) -> Any:
    """`cli("api-keys", "list")`: the command line's main, on the test's database."""
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    # Logging is pytest's here: the CLI would replace its handlers.
    monkeypatch.setattr(cli_module, "configure_logging", lambda *args: None)

    def run(*argv: str) -> Ran:
        capsys.readouterr()
        try:
            code = cli_module.main(list(argv))
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                return [tuple(row) for row in await connection.execute(text(sql))]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_the_cli_issues_lists_and_revokes_keys(cli: Any, database_url: str) -> None:
    created = cli("api-keys", "create", "--name", "ci", "--scope", "users:read", "--scope", "admin")
    listed = cli("api-keys", "list")
    revoked = cli("api-keys", "revoke", "ci")
    again = cli("api-keys", "revoke", "ci")
    after = cli("api-keys", "list")

    assert created.code == 0
    key = created.out.splitlines()[-1]
    assert created.out == key + "\n"  # the key, alone, and nothing else on stdout
    assert KEY_FORMAT.match(key)
    assert key not in created.err
    assert "'ci'" in created.err
    assert key[:12] in created.err  # its prefix, to recognise it later
    header, row = listed.out.splitlines()
    assert header.split() == ["name", "prefix", "scopes", "created", "last", "used", "revoked"]
    name, prefix, scopes, created_at, last_used, revoked_at = row.split()
    assert (name, prefix, scopes, last_used, revoked_at) == (
        "ci", key[:12], "users:read,admin", "-", "-"
    )  # fmt: skip
    assert created_at.startswith(str(utcnow().year))
    assert revoked.code == again.code == 0
    assert revoked.out.startswith("revoked: ci")
    assert again.out.startswith("already revoked: ci")
    assert after.out.splitlines()[1].split()[-1] != "-"
    audit = query(database_url, "SELECT actor, action, resource, details FROM audit_entries")
    assert sorted(entry[:3] for entry in audit) == [
        ("cli", "api_key.created", "api-keys/ci"),
        ("cli", "api_key.revoked", "api-keys/ci"),
    ]
    assert all(key not in str(entry) for entry in audit)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["revoke", "nobody"], "no key named 'nobody'"),
        (["create", "--name", "bootstrap", "--scope", "admin"], "reserved"),
        (["create", "--name", "anonymous", "--scope", "admin"], "reserved"),
        (["create", "--name", "two words", "--scope", "admin"], "a key name is"),
    ],
)
def test_the_cli_refuses_unknown_reserved_and_malformed_names(
    cli: Any, argv: list[str], message: str
) -> None:
    ran = cli("api-keys", *argv)

    assert ran.code == 1
    assert message in ran.err
    assert ran.out == ""


def test_a_name_is_never_reused_so_the_audit_trail_names_one_key(cli: Any) -> None:
    cli("api-keys", "create", "--name", "ci", "--scope", "admin")
    cli("api-keys", "revoke", "ci")

    again = cli("api-keys", "create", "--name", "ci", "--scope", "admin")

    assert again.code == 1
    assert "exists (or existed)" in again.err


def test_the_cli_accepts_only_the_documented_scopes(cli: Any) -> None:
    ran = cli("api-keys", "create", "--name", "ci", "--scope", "users:delete")

    assert ran.code == 2
    assert "invalid choice" in ran.err
    assert set(ALL_SCOPES) == {
        "users:read", "users:write", "notifications:send", "uploads:read",
        "uploads:write", "admin", "metrics",
    }  # fmt: skip


def dump(database_url: str, postgres: PostgresCluster | None) -> bytes:
    """Every byte the database holds: the SQLite file and its WAL, or pg_dump's output."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.split("///", 1)[1])
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert postgres is not None
    return subprocess.run(
        [
            str(postgres.bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(postgres.port),
            "-U", postgres.user, "--data-only", database_url.rsplit("/", 1)[1],
        ],
        capture_output=True,
        check=True,
    ).stdout  # fmt: skip


async def test_the_plain_key_appears_nowhere_in_the_database_or_the_logs(
    app: FastAPI,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with app.state.database.request_sessions() as session:
        issued = await api_keys.create(session, name="grep-me", scopes=[Scope.ADMIN])
    async with api_client(app, issued.key) as http:
        assert (await http.get("/admin/tasks")).status_code == 200
        assert (await http.get("/admin/audit")).status_code == 200
    async with api_client(app, issued.key + "0") as http:
        assert (await http.get("/admin/tasks")).status_code == 401

    postgres = request.getfixturevalue("postgres") if "postgresql" in database_url else None
    held = await asyncio.to_thread(dump, database_url, postgres)

    assert api_keys.digest(issued.key).encode() in held  # the dump is of the right database
    assert issued.key.encode() not in held
    assert issued.key[4:].encode() not in held
    assert issued.key not in caplog.text


def test_keys_are_high_entropy_and_carry_a_recognisable_prefix() -> None:
    keys = {api_keys.generate() for _ in range(1000)}

    assert len(keys) == 1000
    assert all(KEY_FORMAT.match(key) for key in keys)
    # Every character of the alphabet turns up: nothing narrows the 62 choices.
    assert len({char for key in keys for char in key[4:]}) == 62


# --- the bootstrap key -------------------------------------------------------------


@contextlib.asynccontextmanager
async def restarted(settings: Settings, **changes: Any) -> AsyncIterator[FastAPI]:
    """A new process on the same database: a fresh app through its lifespan."""
    fresh = create_app(settings.model_copy(update=changes))
    async with fresh.router.lifespan_context(fresh):
        yield fresh


async def bootstrap_rows(app: FastAPI) -> list[ApiKey]:
    async with app.state.database.request_sessions() as session:
        return list(await session.scalars(select(ApiKey).where(ApiKey.name == "bootstrap")))


async def audit_actions(app: FastAPI) -> list[tuple[str, str]]:
    async with app.state.database.request_sessions() as session:
        rows = await session.execute(select(AuditEntry.actor, AuditEntry.action))
        return [(actor, action) for actor, action in rows]


async def status_with(app: FastAPI, key: str) -> int:
    async with api_client(app, key) as http:
        return (await http.get("/admin/tasks")).status_code


@pytest.mark.parametrize("settings_overrides", [{"bootstrap_api_key": BOOTSTRAP}])
async def test_the_bootstrap_key_is_stored_as_a_digest_at_start_with_every_scope(
    app: FastAPI,
) -> None:
    [row] = await bootstrap_rows(app)

    assert row.key_hash == api_keys.digest(BOOTSTRAP)
    assert row.prefix == BOOTSTRAP[:12]
    assert row.scopes == ALL_SCOPES
    assert await status_with(app, BOOTSTRAP) == 200
    assert await audit_actions(app) == [("startup", "api_key.created")]


@pytest.mark.parametrize("settings_overrides", [{"bootstrap_api_key": BOOTSTRAP}])
async def test_restarting_with_the_same_bootstrap_key_changes_nothing(
    app: FastAPI, settings: Settings
) -> None:
    async with restarted(settings) as again:
        assert len(await bootstrap_rows(again)) == 1
        assert await audit_actions(again) == [("startup", "api_key.created")]


@pytest.mark.parametrize("settings_overrides", [{"bootstrap_api_key": BOOTSTRAP}])
async def test_a_revoked_bootstrap_key_stays_revoked_after_a_restart(
    app: FastAPI, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with app.state.database.request_sessions() as session:
        await api_keys.revoke(session, name="bootstrap")

    async with restarted(settings) as again:
        assert await status_with(again, BOOTSTRAP) == 401
    assert "BOOTSTRAP_API_KEY (key 'bootstrap') was revoked" in caplog.text


@pytest.mark.parametrize("settings_overrides", [{"bootstrap_api_key": BOOTSTRAP}])
async def test_a_changed_bootstrap_key_replaces_the_old_one(
    app: FastAPI, settings: Settings
) -> None:
    new_key = BOOTSTRAP[:-4] + "WXYZ"

    async with restarted(settings, bootstrap_api_key=SecretStr(new_key)) as again:
        assert len(await bootstrap_rows(again)) == 1
        assert await status_with(again, BOOTSTRAP) == 401
        assert await status_with(again, new_key) == 200


async def test_processes_starting_together_store_the_bootstrap_key_once(app: FastAPI) -> None:
    sessions = app.state.database.request_sessions

    await asyncio.gather(
        *(api_keys.ensure_bootstrap(sessions, key=SecretStr(BOOTSTRAP)) for _ in range(5))
    )

    assert len(await bootstrap_rows(app)) == 1
    assert await audit_actions(app) == [("startup", "api_key.created")]


# --- looking keys up ----------------------------------------------------------------


async def last_used(app: FastAPI, name: str) -> Any:
    async with app.state.database.request_sessions() as session:
        row = await api_keys_repo.get_by_name(session, name)
    assert row is not None
    return row.last_used_at


async def test_a_key_s_last_use_is_written_at_most_once_a_minute(app: FastAPI) -> None:
    key = await issue_key(app, "used", [Scope.ADMIN])
    assert await last_used(app, "used") is None

    async def use_from_a_new_process() -> None:
        app.state.key_resolver = KeyResolver(app.state.database.request_sessions)
        assert await status_with(app, key) == 200

    await use_from_a_new_process()
    first = await last_used(app, "used")
    half_a_minute_ago = utcnow() - timedelta(seconds=30)
    async with app.state.database.request_sessions() as session, session.begin():
        await session.execute(update(ApiKey).values(last_used_at=half_a_minute_ago))
    await use_from_a_new_process()
    unchanged = await last_used(app, "used")
    async with app.state.database.request_sessions() as session, session.begin():
        await session.execute(update(ApiKey).values(last_used_at=utcnow() - timedelta(minutes=2)))
    await use_from_a_new_process()
    moved = await last_used(app, "used")

    assert first is not None
    assert unchanged == half_a_minute_ago
    assert moved > half_a_minute_ago


async def test_requests_arriving_together_share_one_read_of_their_key(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await issue_key(app, "busy", [Scope.ADMIN])
    reads = 0
    real = api_keys_repo.find_by_hash

    async def counted(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real(*args)

    monkeypatch.setattr(api_keys_repo, "find_by_hash", counted)

    async with api_client(app, key) as http:
        answers = await asyncio.gather(*(http.get("/admin/tasks") for _ in range(20)))

    assert {response.status_code for response in answers} == {200}
    assert reads == 1
