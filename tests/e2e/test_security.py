"""Keys and limits across real server processes: revocation, shared budgets, recipient limits."""

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.keys import bearer
from tests.support.postgres import PostgresCluster
from tests.support.server import PROJECT_ROOT, ServerProcess
from tests.support.waiting import eventually_async

StartServer = Callable[..., ServerProcess]


def run_cli(env: dict[str, str], cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m app ...` as an operator runs it, beside the running servers."""
    return subprocess.run(
        [sys.executable, "-m", "app", *argv],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


async def committed_revocation(url: str, name: str) -> float:
    """The wall-clock time at which the key's revocation is first visible in the database."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            while True:
                seen = await connection.scalar(
                    text("SELECT revoked_at IS NOT NULL FROM api_keys WHERE name = :name"),
                    {"name": name},
                )
                await connection.rollback()
                if seen:
                    return time.time()
                await asyncio.sleep(0.005)
    finally:
        await engine.dispose()


async def first_refusal(server: ServerProcess, key: str) -> float:
    """The wall-clock time at which the server first answers 401 to `key`."""
    async with httpx.AsyncClient(base_url=server.base_url, headers=bearer(key)) as http:
        while True:
            if (await http.get("/admin/tasks")).status_code == 401:
                return time.time()
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("store", ["postgresql", "sqlite"])
async def test_a_key_made_and_revoked_by_the_cli_takes_effect_on_every_running_server_in_1_s(
    server_env: dict[str, str], start_server: StartServer, tmp_path: Path, store: str
) -> None:
    env = {**server_env, "LOG_LEVEL": "DEBUG"}
    if store == "sqlite":  # the embedded default: two processes on one file
        del env["DATABASE_URL"]
        url = f"sqlite+aiosqlite:///{env['DATA_DIR']}/signup-service.db"  # an absolute path
    else:
        url = env["DATABASE_URL"]
    servers = [start_server(env), start_server(env)]

    created = run_cli(env, tmp_path, "api-keys", "create", "--name", "ops", "--scope", "admin")
    key = created.stdout.strip()
    for server in servers:  # no restart: the new key works at once, and is now cached
        async with httpx.AsyncClient(base_url=server.base_url, headers=bearer(key)) as http:
            assert (await http.get("/admin/tasks")).status_code == 200
    committed = asyncio.create_task(committed_revocation(url, "ops"))
    watching = [asyncio.create_task(first_refusal(server, key)) for server in servers]
    revoked = await asyncio.to_thread(run_cli, env, tmp_path, "api-keys", "revoke", "ops")
    committed_at, *refused_at = await asyncio.wait_for(
        asyncio.gather(committed, *watching), timeout=10
    )
    listed = run_cli(env, tmp_path, "api-keys", "list").stdout

    assert revoked.stdout.startswith("revoked: ops")
    for moment in refused_at:
        assert moment - committed_at <= 1.0
    [row] = [line.split() for line in listed.splitlines() if line.startswith("ops ")]
    assert row[4] != "-"  # last used
    logs = created.stderr + revoked.stderr + "".join(server.log() for server in servers)
    assert "DEBUG" in logs
    assert key not in logs


async def test_two_servers_sharing_redis_share_one_budget_per_address_and_per_key(
    server_env: dict[str, str], start_server: StartServer, redis_url: str
) -> None:
    env = {
        **server_env,
        "RATE_LIMIT_STORAGE_URI": redis_url,
        "SIGNUP_RATE_LIMIT": "4/minute",
        "API_KEY_RATE_LIMIT": "6/minute",
    }
    servers = [start_server(env), start_server(env)]

    signups = []
    reads = []
    for n in range(8):
        server = servers[n % 2]
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as anonymous:
            signups.append(
                await anonymous.post(
                    "/signups", json={"email": f"user{n}@example.com", "name": "Ada"}
                )
            )
        async with server.client() as http:
            reads.append(await http.get("/admin/tasks"))

    assert [r.status_code for r in signups] == [201] * 4 + [429] * 4
    assert [r.status_code for r in reads] == [200] * 6 + [429] * 2
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in signups[4:] + reads[6:])


async def test_a_forged_x_forwarded_for_changes_nothing_on_a_real_server(
    server_env: dict[str, str],
    start_server: StartServer,
    database: tuple[PostgresCluster, str],
) -> None:
    server = start_server({**server_env, "SIGNUP_RATE_LIMIT": "2/minute"})

    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as anonymous:
        answers = [
            await anonymous.post(
                "/signups",
                json={"email": f"user{n}@example.com", "name": "Ada"},
                headers={"X-Forwarded-For": f"192.0.2.{n}", "X-Real-IP": f"192.0.2.{n}"},
            )
            for n in range(4)
        ]

    assert [r.status_code for r in answers] == [201, 201, 429, 429]

    async def audited() -> str:
        cluster, url = database
        return cluster.psql(
            "SELECT string_agg(DISTINCT client_address, ',') FROM audit_entries",
            database=url.rsplit("/", 1)[1],
        )

    assert await eventually_async(audited, what="the audit entries") == "127.0.0.1"


async def test_recipient_limits_hold_across_two_servers(
    server_env: dict[str, str], start_server: StartServer
) -> None:
    env = {**server_env, "NOTIFICATIONS_PER_USER_PER_HOUR": "3", "WELCOME_RESENDS_PER_DAY": "2"}
    servers = [start_server(env), start_server(env)]
    clients = [server.client() for server in servers]
    try:
        signup = await clients[0].post("/signups", json={"email": "ada@example.com", "name": "A"})
        user = signup.json()["id"]
        note = {"channel": "email", "subject": "Hi", "body": "There"}

        # Ten at once, five on each server: the database lets exactly three through.
        notes = await asyncio.gather(
            *(clients[n % 2].post(f"/users/{user}/notifications", json=note) for n in range(10))
        )

        async def settled() -> bool:
            welcome = (await clients[0].get(f"/users/{user}")).json()["welcome_email"]
            return bool(welcome["status"] == "succeeded")

        resends = []
        for n in range(3):
            await eventually_async(settled, timeout=20, what="the welcome email to settle")
            resends.append(await clients[n % 2].post(f"/users/{user}/welcome-email/resend"))
    finally:
        for client in clients:
            await client.aclose()

    assert sorted(r.status_code for r in notes) == [202] * 3 + [429] * 7
    assert [r.status_code for r in resends] == [202, 202, 429]
