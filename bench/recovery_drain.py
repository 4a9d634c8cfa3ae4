"""Benchmark: draining a backlog of due welcome emails, against a bare aiosmtplib loop.

    uv run python -m bench.recovery_drain

10,000 welcome emails left owed (as after a crash or an SMTP outage) are
delivered by a real server's recovery loop: claim, compose, send, settle, for
each. Side by side in the same run, round after round in rotating order:

  service x1   one server process drains them (8 SMTP connections)
  service x2   two server processes on the same database drain them together
  bare loop    8 aiosmtplib clients, one reused connection each, send the same
               messages composed with the email package: no database at all

The SMTP server (its own process) takes 20 ms to accept each message, so the
delay alone would allow 400 messages/s per process: the rest is CPU. The
service's CPU is its process's plus its PostgreSQL backends'.

Targets: the service's CPU per message <= 1.3x the bare loop's; one process
>= 0.95x the bare loop's messages/s; two processes >= 1.7x it. Exits 1 when
one is missed.
"""

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from bench.common import (
    ServiceCpu,
    Target,
    Watcher,
    app_server,
    machine_summary,
    postgres_database,
    smtp_sink,
    table,
    verdict,
    watching,
)
from tests.support.postgres import PostgresCluster
from tests.support.server import ServerProcess

SENDER = "Signup Service <no-reply@signup-service.localhost>"


@dataclass(frozen=True)
class Drain:
    seconds: float
    process_cpu: float  # the sender's process(es)
    backend_cpu: float = 0.0  # their PostgreSQL backends


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


# Nothing left to send: asked through the partial indexes, so a look stays cheap.
SENT = (
    "SELECT NOT EXISTS (SELECT 1 FROM users WHERE welcome_status IN ('pending', 'retrying'))"
    " AND NOT EXISTS (SELECT 1 FROM users WHERE welcome_status = 'running')"
)


def drain_by_recovery(meter: ServiceCpu, watcher: Watcher, count: int, tag: str) -> Drain:
    """Owe `count` emails and wait until the servers' recovery loops delivered them all."""
    before = meter.read()
    started = time.perf_counter()
    insert_owed(meter.cluster, meter.database, count, tag)
    watcher.wait_until(SENT)
    elapsed = time.perf_counter() - started
    service, backends = meter.read().since(before)
    failed = watcher.value("SELECT count(*) FROM users WHERE welcome_status <> 'succeeded'")
    if failed:
        raise RuntimeError(f"{failed} welcome emails failed")
    return Drain(elapsed, service, backends)


def bare_message(tag: str, n: int) -> EmailMessage:
    """The same welcome email, composed the standard library's way."""
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = f"{tag}-{n}@example.com"
    message["Subject"] = "Welcome to Signup Service"
    message["Message-ID"] = f"<welcome.{tag}-{n}.1@signup-service.localhost>"
    message.set_content(f"Hello User {n},\n\nWelcome aboard: your account is ready.\n")
    message.add_alternative(
        f"<p>Hello User {n},</p><p>Welcome aboard: your account is ready.</p>", subtype="html"
    )
    return message


async def bare_loop(port: int, count: int, concurrency: int, tag: str) -> Drain:
    """The same messages through `concurrency` reused aiosmtplib connections, nothing else."""
    numbers = iter(range(count))

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="localhost")
        await client.connect()
        for n in numbers:
            await client.send_message(bare_message(tag, n))
        await client.quit()

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Drain(time.perf_counter() - started, time.process_time() - cpu)


@contextlib.contextmanager
def servers(env: dict[str, str], scratch: Path, count: int) -> Iterator[list[ServerProcess]]:
    with contextlib.ExitStack() as stack:
        started = []
        for number in range(count):
            log_dir = scratch / f"server{number}"
            log_dir.mkdir(exist_ok=True)
            started.append(stack.enter_context(app_server(env, log_dir)))
        yield started


def pids(started: list[ServerProcess]) -> list[int]:
    return [server.process.pid for server in started if server.process is not None]


def run_rounds(
    args: argparse.Namespace, cluster: PostgresCluster, url: str, smtp_port: int, scratch: Path
) -> dict[str, list[Drain]]:
    database = url.rsplit("/", 1)[1]
    env = {
        "DATABASE_URL": url,
        "DATA_DIR": str(scratch),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_POOL_SIZE": str(args.concurrency),
        "RECOVERY_INTERVAL_SECONDS": "0.2",
        "RECOVERY_GRACE_SECONDS": "0",
        "LOG_LEVEL": "INFO",  # the default: what the service logs at work is part of its cost
    }
    drains: dict[str, list[Drain]] = {"x1": [], "x2": [], "bare": []}
    for round_number in range(args.rounds):
        order = ["x1", "bare", "x2"]
        order = order[round_number % 3 :] + order[: round_number % 3]
        for path in order:
            tag = f"r{round_number}{path}"
            if path == "bare":
                drain = asyncio.run(bare_loop(smtp_port, args.messages, args.concurrency, tag))
            else:
                with (
                    servers(env, scratch, 2 if path == "x2" else 1) as started,
                    watching(url) as watcher,
                ):
                    meter = ServiceCpu(cluster, database, pids(started))
                    drain = drain_by_recovery(meter, watcher, args.messages, tag)
            drains[path].append(drain)
            print(
                f"  round {round_number + 1}: {path:<4} {args.messages / drain.seconds:5.0f} msg/s"
            )
    return drains


def report(args: argparse.Namespace, drains: dict[str, list[Drain]]) -> int:
    total: int = args.messages * args.rounds
    rate = {path: total / sum(d.seconds for d in runs) for path, runs in drains.items()}

    def per_message(path: str, part: str) -> float:
        seconds = sum(d.backend_cpu if part == "backend" else d.process_cpu for d in drains[path])
        return seconds / total * 1000

    cpu = {path: per_message(path, "process") + per_message(path, "backend") for path in rate}
    labels = {
        "x1": "service, 1 process: claim, compose, send, settle",
        "x2": "service, 2 processes",
        "bare": "bare aiosmtplib loop, 1 process: compose, send",
    }
    print()
    print(
        f"Draining {args.messages:,} due welcome emails x {args.rounds} interleaved rounds, "
        f"{args.concurrency} SMTP connections per process, SMTP taking "
        f"{args.smtp_delay * 1000:g} ms a message, {machine_summary()}"
    )
    print()
    print(
        table(
            ["path", "msg/s", "CPU ms/msg: process", "PostgreSQL", "total"],
            [
                [
                    labels[path],
                    rate[path],
                    per_message(path, "process"),
                    per_message(path, "backend"),
                    cpu[path],
                ]
                for path in ("x1", "x2", "bare")
            ],
        )
    )
    print()
    return verdict(
        [
            Target("CPU ms per message, 1 process", cpu["x1"], cpu["bare"], 1.3, False),
            Target("messages/s, 1 process", rate["x1"], rate["bare"], 0.95, True),
            Target("messages/s, 2 processes vs 1 bare", rate["x2"], rate["bare"], 1.7, True),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8, help="SMTP connections per process")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smtp-delay", type=float, default=0.02, help="seconds per message")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as scratch,
        postgres_database() as (cluster, url),
        smtp_sink(args.smtp_delay) as smtp_port,
    ):
        drains = run_rounds(args, cluster, url, smtp_port, Path(scratch))
    sys.exit(report(args, drains))


if __name__ == "__main__":
    main()
