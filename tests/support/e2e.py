"""What the end-to-end tests share: the rows they read and write, and servers mid-send.

Helpers over the real things the tests start (tests/e2e/conftest.py): a
PostgreSQL database read with psql, the SMTP test server's record, and server
processes reached over HTTP with their bootstrap key.
"""

import asyncio
import signal
from collections.abc import Callable

import httpx

from tests.support.postgres import PostgresCluster
from tests.support.server import ServerProcess
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually

StartServer = Callable[..., ServerProcess]
# After its graceful shutdown uvicorn re-raises the signal it caught, so the
# process ends "terminated by SIGTERM" (exit status 143 in a shell).
GRACEFUL_EXIT = (0, -signal.SIGTERM)


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def welcome_statuses(cluster: PostgresCluster, url: str) -> dict[str, int]:
    rows = cluster.psql(
        "SELECT welcome_status, count(*) FROM users GROUP BY 1", database=database_name(url)
    )
    return {status: int(count) for status, count in (line.split("|") for line in rows.split())}


def insert_owed_users(
    cluster: PostgresCluster, url: str, count: int, *, due_in_seconds: float = -60
) -> None:
    """Users owing a welcome email, as a crash would leave them: no task scheduled."""
    cluster.psql(
        f"""
        INSERT INTO users (id, email, name, created_at, welcome_status, welcome_generation,
                           welcome_attempts, welcome_next_attempt_at)
        SELECT gen_random_uuid(), 'owed' || n || '@example.com', 'Owed ' || n, now(),
               'pending', 1, 0, now() + interval '{due_in_seconds} seconds'
        FROM generate_series(1, {count}) AS n
        """,  # noqa: S608 - numbers from the test itself
        database=database_name(url),
    )


async def until_every_welcome_succeeded(
    cluster: PostgresCluster, url: str, count: int, *, timeout: float
) -> None:
    await eventually(
        lambda: welcome_statuses(cluster, url) == {"succeeded": count},
        timeout=timeout,
        interval=0.5,
        what=f"all {count} welcome emails to succeed",
    )


def assert_each_delivered_once(smtp: SMTPServer, expected: int) -> None:
    counts = smtp.message_id_counts()
    duplicates = {message_id: n for message_id, n in counts.items() if n > 1}
    assert duplicates == {}
    assert len(counts) == expected


async def sign_up_many(server: ServerProcess, count: int) -> list[str]:
    # With the server's key: anonymous signups are limited per address.
    async with server.client(timeout=30) as http:

        async def one(n: int) -> str:
            response = await http.post(
                "/signups", json={"email": f"user{n}@example.com", "name": f"User {n}"}
            )
            assert response.status_code == 201
            user_id: str = response.json()["id"]
            return user_id

        return list(await asyncio.gather(*(one(n) for n in range(count))))


async def welcomes_in_flight(
    start_server: StartServer,
    env: dict[str, str],
    smtp: SMTPServer,
    *,
    signups: int,
    in_flight: int = 8,
) -> ServerProcess:
    """A server, started with `env`, whose first `in_flight` welcome emails (of `signups`)
    are at the mail server, held there until the test calls `smtp.unstall()`."""
    smtp.stall()
    server = start_server(env)
    await sign_up_many(server, signups)
    await eventually(lambda: smtp.data_commands >= in_flight, what="sends to be in flight")
    return server


def count_rows(cluster: PostgresCluster, url: str, table: str) -> int:
    return int(cluster.psql(f"SELECT count(*) FROM {table}", database=database_name(url)))  # noqa: S608


def started_count(server: ServerProcess) -> int:
    text = httpx.get(server.base_url + "/metrics", headers=server.headers).text
    line = next(
        line for line in text.splitlines()
        if line.startswith('signup_tasks_started_total{kind="welcome_email"}')
    )  # fmt: skip
    return int(float(line.split()[-1]))
