"""Benchmark: draining a backlog of due welcome emails through the recovery path.

    uv run python -m bench.recovery_drain

10,000 welcome emails left owed (as after a crash or an SMTP outage) are
delivered by a real server's recovery loop: claim, compose, send, settle, for
each. Side by side in the same run, a bare aiosmtplib loop sends the same
10,000 messages over the same number of reused connections to the same SMTP
server, with no database at all. Target: the recovery path reaches >= 0.5x
the bare loop's messages per second.
"""

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from app.integrations.mailer import Mailer, compose
from bench.common import (
    app_server,
    cpu_sample,
    machine_summary,
    postgres_database,
    smtp_sink,
    table,
)
from tests.support.postgres import PostgresCluster


def insert_owed(cluster: PostgresCluster, database: str, count: int, tag: str) -> None:
    cluster.psql(
        f"""
        INSERT INTO users (id, email, name, created_at, welcome_status, welcome_generation,
                           welcome_attempts, welcome_next_attempt_at)
        SELECT gen_random_uuid(), '{tag}-' || n || '@example.com', 'User ' || n, now(),
               'pending', 1, 0, now() - interval '1 minute'
        FROM generate_series(1, {count}) AS n
        """,  # noqa: S608 - numbers and a tag from this script
        database=database,
    )


def owed(cluster: PostgresCluster, database: str) -> int:
    return int(
        cluster.psql(
            "SELECT count(*) FROM users WHERE welcome_status <> 'succeeded'", database=database
        )
    )


def drain_by_recovery(
    cluster: PostgresCluster, database: str, pid: int, count: int, tag: str
) -> tuple[float, float]:
    """Seconds to deliver `count` owed emails, and the server's CPU seconds for it."""
    before = cpu_sample(pid)
    started = time.perf_counter()
    insert_owed(cluster, database, count, tag)
    while owed(cluster, database):
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    return elapsed, cpu_sample(pid).process - before.process


async def bare_loop(port: int, count: int, concurrency: int, tag: str) -> tuple[float, float]:
    """The same messages through reused aiosmtplib connections, nothing else."""
    mailer = Mailer(host="127.0.0.1", port=port, pool_size=concurrency, timeout=30)
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            await mailer.send(
                compose(
                    sender="Signup Service <no-reply@signup-service.localhost>",
                    to=f"{tag}-{n}@example.com",
                    subject="Welcome to Signup Service",
                    text=f"Hello User {n},\n\nWelcome aboard: your account is ready.\n",
                    html=f"<p>Hello User {n},</p><p>Welcome aboard: your account is ready.</p>",
                    message_id=f"<welcome.{tag}-{n}.1@signup-service.localhost>",
                )
            )

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    await mailer.close()
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8, help="SMTP connections, both sides")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    ours: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    with (
        tempfile.TemporaryDirectory() as scratch,
        postgres_database() as (cluster, url),
        smtp_sink() as smtp_port,
    ):
        database = url.rsplit("/", 1)[1]
        env = {
            "DATABASE_URL": url,
            "DATA_DIR": scratch,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_POOL_SIZE": str(args.concurrency),
            "RECOVERY_INTERVAL_SECONDS": "0.2",
            "RECOVERY_GRACE_SECONDS": "0",
        }
        with app_server(env, Path(scratch)) as server:
            assert server.process is not None
            for round_number in range(args.rounds):
                tag = f"r{round_number}"
                seconds, cpu = drain_by_recovery(
                    cluster, database, server.process.pid, args.messages, tag
                )
                ours.append((seconds, cpu))
                print(f"  round {round_number + 1}: recovery {args.messages / seconds:7.0f} msg/s")
                seconds, cpu = asyncio.run(
                    bare_loop(smtp_port, args.messages, args.concurrency, tag)
                )
                bare.append((seconds, cpu))
                print(f"  round {round_number + 1}: bare loop {args.messages / seconds:6.0f} msg/s")

    total = args.messages * args.rounds
    ours_rate = total / sum(s for s, _ in ours)
    bare_rate = total / sum(s for s, _ in bare)
    print()
    print(
        f"Draining {args.messages:,} due welcome emails x {args.rounds} rounds, "
        f"{args.concurrency} SMTP connections, {machine_summary()}"
    )
    print()
    print(
        table(
            ["path", "messages/s", "vs bare loop", "CPU ms/message (sender process)"],
            [
                [
                    "recovery: claim, compose, send, settle",
                    ours_rate,
                    f"{ours_rate / bare_rate:.2f}x",
                    sum(c for _, c in ours) / total * 1000,
                ],
                [
                    "bare aiosmtplib loop: compose, send",
                    bare_rate,
                    "1.00x",
                    sum(c for _, c in bare) / total * 1000,
                ],
            ],
        )
    )


if __name__ == "__main__":
    main()
