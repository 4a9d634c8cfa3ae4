"""Benchmark: webhook notifications delivered through the service vs a bare httpx loop.

    uv run python -m bench.webhooks [--notifications 5000] [--concurrency 16] [--rounds 7]

One run, one local receiver (its own process), PostgreSQL, and three paths
interleaved round after round, each at the same concurrency:

(a) the API: POST /users/{id}/notifications, each answered 202 and delivered
    by its BackgroundTask (claim, read the recipient, sign, POST, settle),
    timed from the first request until every notification has settled;
(b) recovery: the same number left owed in the database (as after a crash),
    delivered by the server's recovery loop, woken as a web process wakes it
    after a commit, timed from the rows' commit until every one has settled;
(c) a bare httpx loop: one AsyncClient POSTing the same body to the same
    receiver, with no database, no signing and no bookkeeping.

Before each path, VACUUM ANALYZE and a CHECKPOINT, so the database's
housekeeping after one path does not land in the next one's timing. The
service's CPU is its process's plus its PostgreSQL backends'. Targets,
for the drain (b): CPU per delivery <= 1.3x the bare loop's, deliveries/s >=
0.9x, each the median of the per-round ratios (a shared machine disturbs
single rounds; the median of seven moves least); exits 1 when one is missed.
(a) is shown beside them; its request side is measured against an
insert-only floor by bench.signups. The receiver also counts distinct
webhook-ids, to show nothing was sent twice.
"""

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.integrations.webhooks import new_secret
from app.tasks import wake
from bench.common import (
    LoadResult,
    ServiceCpu,
    Target,
    Watcher,
    _wait_for_port,
    app_server,
    closed_loop,
    machine_summary,
    postgres_database,
    table,
    verdict,
    watching,
)
from tests.support.keys import NO_RATE_LIMITS, SERVER_KEY, bearer
from tests.support.postgres import PostgresCluster, free_port

USERS = 100
SUBJECT = "Your export is ready"
BODY = "Download it within 24 hours: https://example.com/exports/1234"


@contextlib.contextmanager
def webhook_sink() -> Iterator[str]:
    """The receiver as its own process; yields its base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.webhook_sink", "--port", str(port)])
    try:
        _wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def create_users(cluster: PostgresCluster, database: str) -> list[str]:
    """Users whose welcome email went out already, each with a webhook secret."""
    ids = [str(uuid.uuid4()) for _ in range(USERS)]
    values = ", ".join(
        f"('{user_id}', 'bench{n}@example.com', 'Bench {n}', now(), 'succeeded', 1, 1, "
        f"'{new_secret()}')"
        for n, user_id in enumerate(ids)
    )
    statement = (
        "INSERT INTO users (id, email, name, created_at, welcome_status, welcome_generation, "  # noqa: S608 - values generated here
        f"welcome_attempts, webhook_secret) VALUES {values}"
    )
    cluster.psql(statement, database=database)
    return ids


def point_webhooks(cluster: PostgresCluster, database: str, url: str) -> None:
    cluster.psql(f"UPDATE users SET webhook_url = '{url}'", database=database)  # noqa: S608


# Nothing left to deliver: asked through the partial indexes, so a look stays cheap.
SETTLED = (
    "SELECT NOT EXISTS (SELECT 1 FROM notifications WHERE status IN ('pending', 'retrying'))"
    " AND NOT EXISTS (SELECT 1 FROM notifications WHERE status = 'running')"
)


def wait_until_settled(watcher: Watcher) -> None:
    watcher.wait_until(SETTLED)
    failed = watcher.value("SELECT count(*) FROM notifications WHERE status <> 'succeeded'")
    if failed:
        raise RuntimeError(f"{failed} notifications failed")


def through_the_api(
    watcher: Watcher,
    base_url: str,
    users: list[str],
    args: argparse.Namespace,
) -> float:
    payload = {"channel": "webhook", "subject": SUBJECT, "body": BODY}

    headers = bearer(SERVER_KEY)

    async def send(client: httpx.AsyncClient, n: int) -> httpx.Response:
        user_id = users[n % len(users)]
        return await client.post(f"/users/{user_id}/notifications", json=payload, headers=headers)

    started = time.perf_counter()
    result: LoadResult = asyncio.run(
        closed_loop(base_url, send, concurrency=args.concurrency, total=args.notifications)
    )
    if result.errors:
        raise RuntimeError(f"{result.errors} notification requests failed")
    wait_until_settled(watcher)
    return time.perf_counter() - started


def by_recovery(
    cluster: PostgresCluster,
    database: str,
    watcher: Watcher,
    users: list[str],
    args: argparse.Namespace,
) -> float:
    # The rows, and the wake-up a web process sends after committing owed work, in one
    # transaction: the drain is timed from their commit.
    cluster.psql(
        f"""
        INSERT INTO notifications (id, user_id, channel, subject, body, created_at, status,
                                   attempts, next_attempt_at)
        SELECT gen_random_uuid(), (ARRAY['{"','".join(users)}']::uuid[])[1 + n % {len(users)}],
               'webhook', '{SUBJECT}', '{BODY}', now(), 'pending', 0,
               now() - interval '1 minute'
        FROM generate_series(1, {args.notifications}) AS n;
        SELECT pg_notify('{wake.CHANNEL}', '');
        """,  # noqa: S608 - values generated here
        database=database,
    )
    started = time.perf_counter()
    wait_until_settled(watcher)
    return time.perf_counter() - started


@dataclass(frozen=True)
class Run:
    seconds: float
    process_cpu: float  # the sender's process
    backend_cpu: float = 0.0  # its PostgreSQL backends

    @property
    def cpu(self) -> float:
        return self.process_cpu + self.backend_cpu


async def bare_loop(url: str, args: argparse.Namespace) -> Run:
    """The same POSTs through one pooled httpx client, nothing else."""
    body = json.dumps(
        {"type": "user.notification", "timestamp": "2026-11-22T00:00:00Z",
         "data": {"id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()),
                  "subject": SUBJECT, "body": BODY}},
        separators=(",", ":"),
    ).encode()  # fmt: skip
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    numbers = iter(range(args.notifications))
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            for n in numbers:
                headers = {"content-type": "application/json", "webhook-id": f"bare_{n}"}
                response = await client.post(url, content=body, headers=headers)
                response.raise_for_status()

        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return Run(time.perf_counter() - started, time.process_time() - cpu)


def run_rounds(
    args: argparse.Namespace, cluster: PostgresCluster, url: str, sink: str, scratch: str
) -> dict[str, list[Run]]:
    database = url.rsplit("/", 1)[1]
    users = create_users(cluster, database)
    env = {
        "DATABASE_URL": url,
        "DATA_DIR": scratch,
        "NOTIFICATION_WEBHOOK_CONCURRENCY": str(args.concurrency),
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",  # the receiver is on loopback
        "RECOVERY_INTERVAL_SECONDS": "0.2",
        "RECOVERY_GRACE_SECONDS": "0",
        "LOG_LEVEL": "INFO",  # the default: what the service logs at work is part of its cost
        # A key for the API path, and no limit on how often one user is notified:
        # the benchmark sends each user 50 notifications a round.
        "BOOTSTRAP_API_KEY": SERVER_KEY,
        **NO_RATE_LIMITS,
    }
    runs: dict[str, list[Run]] = {"api": [], "recovery": [], "bare": []}
    with app_server(env, Path(scratch)) as server, watching(url) as watcher:
        assert server.process is not None
        meter = ServiceCpu(cluster, database, [server.process.pid])
        for round_number in range(1, args.rounds + 1):
            order = ["recovery", "bare", "api"]
            order = order[round_number % 3 :] + order[: round_number % 3]
            for path in order:
                # The database's housekeeping after the last path (autovacuum, a
                # checkpoint) is done now, not during this one's timing.
                cluster.psql("VACUUM ANALYZE", database=database)
                cluster.psql("CHECKPOINT", database=database)
                target = f"{sink}/{path}/{round_number}"
                if path == "bare":
                    run = asyncio.run(bare_loop(target, args))
                else:
                    point_webhooks(cluster, database, target)
                    before = meter.read()
                    if path == "api":
                        took = through_the_api(watcher, server.base_url, users, args)
                    else:
                        took = by_recovery(cluster, database, watcher, users, args)
                    run = Run(took, *meter.read().since(before))
                runs[path].append(run)
                print(
                    f"  round {round_number}: {path:<8} {args.notifications / run.seconds:7.0f}/s"
                )
    return runs


def check_receiver(stats: dict[str, dict[str, int]], args: argparse.Namespace) -> None:
    """Every service delivery reached the receiver exactly once."""
    for path in ("api", "recovery"):
        for round_number in range(1, args.rounds + 1):
            counted = stats[f"/{path}/{round_number}"]
            if counted["requests"] != args.notifications or counted["ids"] != args.notifications:
                raise RuntimeError(f"{path} round {round_number}: receiver counted {counted}")


def report(args: argparse.Namespace, runs: dict[str, list[Run]]) -> int:
    total: int = args.notifications * args.rounds
    rate = {path: total / sum(r.seconds for r in values) for path, values in runs.items()}
    process = {
        path: sum(r.process_cpu for r in values) / total * 1000 for path, values in runs.items()
    }
    backend = {
        path: sum(r.backend_cpu for r in values) / total * 1000 for path, values in runs.items()
    }
    labels = {
        "api": "(a) POST /users/{id}/notifications, delivered in the background",
        "recovery": "(b) owed rows drained by recovery: claim, sign, POST, settle",
        "bare": "(c) bare httpx loop: POST only",
    }
    print()
    print(
        f"{args.notifications:,} webhook notifications per path x {args.rounds} interleaved "
        f"rounds, concurrency {args.concurrency}, {machine_summary()}; every service delivery "
        "reached the receiver once (distinct webhook-ids = requests)"
    )
    print()
    print(
        table(
            ["path", "deliveries/s", "CPU ms/delivery: process", "PostgreSQL", "total"],
            [
                [
                    labels[path],
                    rate[path],
                    process[path],
                    backend[path],
                    process[path] + backend[path],
                ]
                for path in ("api", "recovery", "bare")
            ],
        )
    )
    print()
    cpu = {path: process[path] + backend[path] for path in rate}
    pairs = list(zip(runs["recovery"], runs["bare"], strict=True))
    cpu_ratios = [drain.cpu / bare.cpu for drain, bare in pairs]
    rate_ratios = [bare.seconds / drain.seconds for drain, bare in pairs]
    return verdict(
        [
            Target(
                "drain CPU ms per delivery (median of rounds)",
                cpu["recovery"],
                cpu["bare"],
                1.3,
                False,
                cpu_ratios,
            ),
            Target(
                "drain deliveries/s (median of rounds)",
                rate["recovery"],
                rate["bare"],
                0.9,
                True,
                rate_ratios,
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--notifications", type=int, default=5_000, help="per path and round")
    parser.add_argument("--concurrency", type=int, default=16, help="deliveries in flight")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as scratch,
        postgres_database() as (cluster, url),
        webhook_sink() as sink,
    ):
        runs = run_rounds(args, cluster, url, sink, scratch)
        check_receiver(httpx.get(f"{sink}/stats").json(), args)
    sys.exit(report(args, runs))


if __name__ == "__main__":
    main()
