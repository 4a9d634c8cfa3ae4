"""Benchmark: recovery and the operator overview with a million users, against ten thousand.

    uv run python -m bench.at_scale

Two databases on one PostgreSQL server: "small" holds 10,000 users, every one
owed a welcome email; "large" holds 1,000,000, of which the same 10,000 are
owed and the rest were sent theirs long ago. Alternating between the two,
round after round:

  recovery pass     what a pass reads before it runs anything: the abandoned
                    rows failed for good, then the due rows, a batch of 500
                    (app.tasks.recovery, through the service's own repository)
  GET /admin/tasks  the overview's reads (app.services.admin.overview)

Targets: a recovery pass costs no more with a million rows than with ten
thousand (<= 1.1x: the same work, within the noise of a shared machine),
and its plan reads the partial indexes (the EXPLAIN is printed); the overview
costs <= 1.5x. Exits 1 when one is missed.
"""

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app.core import migrations
from app.core.db import single_statement
from app.models.base import utcnow
from app.models.user import WELCOME_EMAIL_STATE
from app.repositories import tasks as tasks_repo
from app.services import admin
from bench.common import Target, machine_summary, table, verdict
from tests.support.postgres import PostgresCluster

OWED = 10_000
BATCH = 500


def fill(cluster: PostgresCluster, database: str, users: int) -> None:
    """`users` users: the first OWED owe a welcome email, due a minute ago; the rest got theirs."""
    cluster.psql(
        f"""
        INSERT INTO users (id, email, name, created_at, welcome_status, welcome_generation,
                           welcome_attempts, welcome_next_attempt_at, welcome_succeeded_at)
        SELECT gen_random_uuid(), 'user' || n || '@example.com', 'User ' || n,
               now() - interval '1 day',
               CASE WHEN n <= {OWED} THEN 'pending' ELSE 'succeeded' END, 1,
               CASE WHEN n <= {OWED} THEN 0 ELSE 1 END,
               CASE WHEN n <= {OWED} THEN now() - interval '1 minute' END,
               CASE WHEN n > {OWED} THEN now() - interval '1 day' END
        FROM generate_series(1, {users}) AS n;
        """,  # noqa: S608 - numbers from this script
        database=database,
    )
    # What autovacuum does for a table this size after a load.
    cluster.psql("VACUUM ANALYZE users", database=database)


async def recovery_pass(engine: AsyncEngine) -> None:
    now = utcnow()
    async with single_statement(engine) as connection:
        await tasks_repo.abandon_exhausted(connection, WELCOME_EMAIL_STATE, now=now, max_attempts=8)
    async with single_statement(engine) as connection:
        found = await tasks_repo.due_ids(
            connection,
            WELCOME_EMAIL_STATE,
            now=now,
            due_before=now - timedelta(seconds=10),
            limit=BATCH,
        )
    assert len(found) == BATCH


async def overview(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session:
        await admin.overview(session)


Work = Callable[[AsyncEngine], Awaitable[None]]


async def timings(
    engines: dict[str, AsyncEngine], work: Work, rounds: int, repeats: int
) -> dict[str, list[float]]:
    """Seconds per run of `work` on each database, alternating between them."""
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for engine in engines.values():  # warm caches and prepared statements
        for _ in range(5):
            await work(engine)
    for _ in range(rounds):
        for name, engine in engines.items():
            for _ in range(repeats):
                started = time.perf_counter()
                await work(engine)
                seconds[name].append(time.perf_counter() - started)
    return seconds


def due_plan(cluster: PostgresCluster, database: str) -> str:
    now = utcnow()
    statement = tasks_repo.due_statement(
        WELCOME_EMAIL_STATE, now=now, due_before=now - timedelta(seconds=10), limit=BATCH
    )
    sql = statement.compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    return cluster.psql(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}", database=database)


async def measure(
    urls: dict[str, str], args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    engines = {name: create_async_engine(url) for name, url in urls.items()}
    try:
        return {
            "recovery": await timings(engines, recovery_pass, args.rounds, args.repeats),
            "overview": await timings(engines, overview, args.rounds, args.repeats),
        }
    finally:
        for engine in engines.values():
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--large", type=int, default=1_000_000, help="users in the large database")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20, help="runs per database and round")
    args = parser.parse_args()
    cluster = PostgresCluster()
    try:
        cluster.start()
        urls = {}
        for name, users in (("small", OWED), ("large", args.large)):
            urls[name] = cluster.create_database(name)
            migrations.upgrade(urls[name])
            fill(cluster, name, users)
        plan = due_plan(cluster, "large")
        results = asyncio.run(measure(urls, args))
    finally:
        cluster.remove()
    sys.exit(report(args, plan, results))


def report(args: argparse.Namespace, plan: str, results: dict[str, dict[str, list[float]]]) -> int:
    median = {
        (what, name): statistics.median(seconds) * 1000
        for what, by_name in results.items()
        for name, seconds in by_name.items()
    }
    print(
        f"{OWED:,} owed welcome emails among {OWED:,} users (small) and {args.large:,} (large); "
        f"{args.rounds} interleaved rounds of {args.repeats} runs, {machine_summary()}"
    )
    print()
    print("Recovery's due-work query on the large database:")
    print()
    print("\n".join(f"    {line}" for line in plan.splitlines()))
    print()
    uses_indexes = "ix_users_welcome_due" in plan and "Seq Scan" not in plan
    print(
        table(
            ["median ms", "small", "large"],
            [
                [
                    "recovery pass (abandoned, then 500 due)",
                    *(median[("recovery", n)] for n in ("small", "large")),
                ],
                ["GET /admin/tasks reads", *(median[("overview", n)] for n in ("small", "large"))],
            ],
        )
    )
    print()
    status = verdict(
        [
            Target(
                "recovery pass ms, large vs small",
                median[("recovery", "large")],
                median[("recovery", "small")],
                1.1,
                False,
            ),
            Target(
                "GET /admin/tasks ms, large vs small",
                median[("overview", "large")],
                median[("overview", "small")],
                1.5,
                False,
            ),
        ]
    )
    print()
    verdict_word = "yes" if uses_indexes else "NO"
    print(f"recovery's plan reads its partial index, no sequential scan: {verdict_word}")
    return status if uses_indexes else 1


if __name__ == "__main__":
    main()
