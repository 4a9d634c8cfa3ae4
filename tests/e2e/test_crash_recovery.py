"""The central promise, proven by killing the real server: nothing lost, nothing sent twice."""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.e2e import (
    GRACEFUL_EXIT,
    StartServer,
    assert_each_delivered_once,
    count_rows,
    database_name,
    insert_owed_users,
    sign_up_many,
    started_count,
    until_every_welcome_succeeded,
    welcome_statuses,
    welcomes_in_flight,
)
from tests.support.keys import SERVER_KEY
from tests.support.postgres import PostgresCluster
from tests.support.server import PROJECT_ROOT
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually, eventually_async


def upload_transactions_open(cluster: PostgresCluster, url: str) -> int:
    """Transactions that have written a chunk of an upload and wait for more of it."""
    return int(
        cluster.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
            "AND query LIKE 'INSERT INTO upload_chunks%'",
            database=database_name(url),
        )
    )


async def test_kill_9_while_smtp_holds_every_message_then_each_welcome_arrives_exactly_once(
    database: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    server_env: dict[str, str],
    start_server: StartServer,
) -> None:
    cluster, url = database
    env = {**server_env, "TASK_TIMEOUT_SECONDS": "3", "TASK_LEASE_SECONDS": "4"}
    first = await welcomes_in_flight(start_server, env, smtp, signups=200)

    first.kill()
    assert smtp.messages == []
    smtp.unstall()  # the mail server is healthy again
    start_server(env)

    await until_every_welcome_succeeded(cluster, url, 200, timeout=90)
    assert_each_delivered_once(smtp, 200)


async def test_sigterm_lets_in_flight_sends_finish_then_exits_and_nothing_is_lost_or_doubled(
    database: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    server_env: dict[str, str],
    start_server: StartServer,
) -> None:
    cluster, url = database
    env = {**server_env, "SHUTDOWN_GRACE_SECONDS": "15", "SMTP_POOL_SIZE": "8"}
    smtp.set_delay(1.0)
    server = start_server(env)
    await sign_up_many(server, 24)
    await eventually(lambda: smtp.data_commands >= 8, what="sends to be in flight")

    started = time.monotonic()
    exit_code = server.terminate(timeout=30)
    took = time.monotonic() - started

    assert exit_code in GRACEFUL_EXIT
    assert took < 15
    assert welcome_statuses(cluster, url) == {"succeeded": 24}
    assert_each_delivered_once(smtp, 24)
    start_server(env)
    assert welcome_statuses(cluster, url) == {"succeeded": 24}
    assert_each_delivered_once(smtp, 24)


async def test_sigterm_past_the_grace_hands_work_back_and_a_restart_delivers_it_at_once(
    database: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    server_env: dict[str, str],
    start_server: StartServer,
) -> None:
    cluster, url = database
    # A long lease: if rows were not handed back, the restart would wait 300 s for them.
    env = {**server_env, "SHUTDOWN_GRACE_SECONDS": "2", "TASK_LEASE_SECONDS": "300"}
    server = await welcomes_in_flight(start_server, env, smtp, signups=10)

    assert server.terminate(timeout=30) in GRACEFUL_EXIT
    assert "running" not in welcome_statuses(cluster, url)
    smtp.unstall()
    start_server(env)

    await until_every_welcome_succeeded(cluster, url, 10, timeout=30)
    assert_each_delivered_once(smtp, 10)


async def test_the_end_of_the_grace_is_one_warning_and_cuts_an_unanswered_request_off_with_503(
    database: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    server_env: dict[str, str],
    start_server: StartServer,
    tmp_path: Path,
) -> None:
    cluster, url = database
    env = {**server_env, "SHUTDOWN_GRACE_SECONDS": "1", "TASK_LEASE_SECONDS": "300"}
    # Their emails hang in background tasks.
    server = await welcomes_in_flight(start_server, env, smtp, signups=3, in_flight=3)
    # And an upload still arriving, its handler streaming it into the database: its
    # first chunk is written, in a transaction that waits for the rest.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /uploads HTTP/1.1\r\nHost: service\r\nContent-Length: 3000000\r\n"
        + f"Authorization: Bearer {SERVER_KEY}\r\n".encode()
        + b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        b"email,name\n" + b"ada@example.com,Ada\n" * 60_000
    )
    await writer.drain()
    await eventually(
        lambda: upload_transactions_open(cluster, url) == 1, what="the upload to be receiving"
    )

    exit_code = await asyncio.to_thread(server.terminate, 30)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()

    assert exit_code in GRACEFUL_EXIT
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"application/problem+json" in answer
    assert b"shutting down" in answer
    assert "running" not in welcome_statuses(cluster, url)  # handed back
    assert count_rows(cluster, url, "upload_chunks") == 0  # the partial upload rolled back
    assert count_rows(cluster, url, "uploads") == 0
    log = server.log()
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log
    assert [line for line in log.splitlines() if " ERROR " in line] == []
    [grace_over] = [line for line in log.splitlines() if "timeout graceful shutdown" in line]
    assert " WARNING " in grace_over


async def test_two_servers_recovering_500_due_rows_send_500_messages_without_duplicates(
    database: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    server_env: dict[str, str],
    start_server: StartServer,
) -> None:
    cluster, url = database
    insert_owed_users(cluster, url, 500)
    env = {**server_env, "RECOVERY_BATCH_SIZE": "100"}

    servers = [start_server(env), start_server(env)]

    await until_every_welcome_succeeded(cluster, url, 500, timeout=90)
    assert_each_delivered_once(smtp, 500)
    started = [started_count(server) for server in servers]
    assert sum(started) == 500  # every claim won exactly once, across both servers


async def test_a_20s_database_outage_with_due_work_ends_with_everything_delivered(
    own_postgres: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    server_env: dict[str, str],
    start_server: StartServer,
) -> None:
    cluster, url = own_postgres
    server = start_server({**server_env, "DATABASE_URL": url})
    assert server.process is not None
    pid = server.process.pid
    insert_owed_users(cluster, url, 50, due_in_seconds=2)  # due while the database is down

    cluster.stop()
    outage_began = time.monotonic()
    async with server.client(timeout=10) as http:

        async def not_ready() -> bool:
            return (await http.get("/readyz")).status_code == 503

        await eventually_async(not_ready, timeout=10, what="/readyz to answer 503")
        assert (await http.get("/healthz")).status_code == 200
        await asyncio.sleep(max(0.0, 20 - (time.monotonic() - outage_began)))
        assert server.process.poll() is None  # still the same process, not a crash loop
        cluster.start()

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await eventually_async(ready, timeout=30, what="/readyz to recover")

    await until_every_welcome_succeeded(cluster, url, 50, timeout=60)
    assert_each_delivered_once(smtp, 50)
    assert server.process.pid == pid
    assert "recovery pass failed" in server.log()  # it noticed the outage, and carried on


async def test_a_database_outage_right_after_the_250_sends_the_message_again_with_one_message_id(
    own_postgres: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    server_env: dict[str, str],
    start_server: StartServer,
) -> None:
    """The mail server accepted the message, but the success could not be recorded
    (the settle gives up after 0.8 of a lease): recovery sends it again, with the
    same Message-ID, which is how a receiver drops the duplicate."""
    cluster, url = own_postgres
    env = {
        **server_env,
        "DATABASE_URL": url,
        "TASK_TIMEOUT_SECONDS": "3",
        "TASK_LEASE_SECONDS": "4",
    }
    server = start_server(env)
    smtp.hold()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        response = await http.post("/signups", json={"email": "ada@example.com", "name": "Ada"})
    assert response.status_code == 201
    await eventually(lambda: smtp.data_commands >= 1, what="the send to reach DATA")

    cluster.stop()
    smtp.unstall()  # 250: delivered, while the database is down
    await eventually(lambda: len(smtp.messages) == 1, what="the first delivery")
    await eventually(
        lambda: "task stopped before settling" in server.log(),
        timeout=15,
        what="the settle to give up",
    )
    cluster.start()

    await until_every_welcome_succeeded(cluster, url, 1, timeout=30)
    first, second = smtp.messages
    assert first.message_id == second.message_id
    assert first.message_id == f"<welcome.{response.json()['id']}.1@signup-service.localhost>"


def test_recover_command_completes_work_left_running_with_an_expired_lease(
    database: tuple[PostgresCluster, str], smtp: SMTPServer, server_env: dict[str, str]
) -> None:
    cluster, url = database
    insert_owed_users(cluster, url, 3)
    cluster.psql(
        "UPDATE users SET welcome_status = 'running', welcome_attempts = 1, "
        "welcome_lease_until = now() - interval '1 minute'",
        database=database_name(url),
    )

    result = subprocess.run(
        [sys.executable, "-m", "app", "recover"],
        env={**server_env, "PATH": "/usr/bin:/bin"},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "kind",
        "due",
        "succeeded",
        "retrying",
        "failed",
        "skipped",
        "abandoned",
    ]
    assert [row.split() for row in rows] == [
        ["welcome_email", "3", "3", "0", "0", "0", "0"],
        ["csv_import", "0", "0", "0", "0", "0", "0"],
        ["notification_email", "0", "0", "0", "0", "0", "0"],
        ["notification_webhook", "0", "0", "0", "0", "0", "0"],
    ]
    assert welcome_statuses(cluster, url) == {"succeeded": 3}
    assert_each_delivered_once(smtp, 3)
