"""Benchmark: what the key check and the rate limits cost at saturation.

    uv run python -m bench.security [--requests 1500] [--concurrency 32] [--rounds 4]

Against a real uvicorn process and PostgreSQL, each pair side by side, back
to back, its order swapped every round, at saturation (a closed loop of
`--concurrency` clients):

  (a) GET /users/{id} with an API key: the key looked up (cached), its
      scope checked, and the request counted against the key's rate
  (b) GET /bench/users-unchecked/{id}: the same route function, check off
  (c) POST /signups, counted against the client address's rate
  (d) POST /bench/signups-unlimited: the same route function, limit off

The rates are set high enough never to refuse: every request is counted and
none is turned away. With --redis (the default where redis-server is
installed) a second server counts in Redis instead of memory, as replicas
do, and the four are run against it too.

A shared 2-CPU machine is noisy, so each pair's ratio is taken per round and
the median reported; the server's CPU time per request (signups: including
the welcome email each one owes) shows the cost without the noise.

Targets: (a) >= 0.9x (b) and (c) >= 0.9x (d) in requests per second.
"""

import argparse
import asyncio
import contextlib
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    LoadResult,
    Send,
    app_server,
    closed_loop,
    cpu_sample,
    machine_summary,
    postgres_database,
    smtp_sink,
    table,
)
from bench.signups import merged, wait_for_backlog
from tests.support.keys import SERVER_KEY, bearer
from tests.support.postgres import PostgresCluster
from tests.support.redis import running_redis
from tests.support.server import ServerProcess

# Counted, never refused.
NEVER_REFUSED = "100000000/minute"


@dataclass(frozen=True)
class Variant:
    label: str
    path: str  # for signups the path; for reads, the prefix of the user's id
    signup: bool


CHECKED_READ = Variant("(a) GET /users/{id}, key checked and counted", "/users/", False)
UNCHECKED_READ = Variant("(b) the same route, check off", "/bench/users-unchecked/", False)
LIMITED_SIGNUP = Variant("(c) POST /signups, address counted", "/signups", True)
UNLIMITED_SIGNUP = Variant("(d) the same route, limit off", "/bench/signups-unlimited", True)
PAIRS = [(CHECKED_READ, UNCHECKED_READ), (LIMITED_SIGNUP, UNLIMITED_SIGNUP)]


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    server_cpu: float  # seconds, background work included


@dataclass
class Bench:
    cluster: PostgresCluster
    database: str
    user_id: str
    args: argparse.Namespace

    def sender(self, variant: Variant, run: str) -> Send:
        if variant.signup:

            async def signup(client: httpx.AsyncClient, number: int) -> httpx.Response:
                return await client.post(
                    variant.path, json={"email": f"{run}-{number}@example.com", "name": "Ada"}
                )

            return signup

        async def read(client: httpx.AsyncClient, number: int) -> httpx.Response:
            # The key goes with both, so both read the same bytes off the wire.
            return await client.get(variant.path + self.user_id, headers=bearer(SERVER_KEY))

        return read

    def measure(self, server: ServerProcess, variant: Variant, run: str) -> Measured:
        assert server.process is not None
        before = cpu_sample(server.process.pid)
        load = asyncio.run(
            closed_loop(
                server.base_url,
                self.sender(variant, run),
                concurrency=self.args.concurrency,
                total=self.args.requests,
            )
        )
        if variant.signup:  # the emails it owes are its cost, not the next variant's
            wait_for_backlog(self.cluster, self.database, timeout=600)
        after = cpu_sample(server.process.pid)
        return Measured(load, after.process - before.process)


@contextlib.contextmanager
def redis_uri(wanted: bool) -> Iterator[str | None]:
    if not wanted:
        yield None
        return
    with running_redis() as redis:
        yield redis.url


async def first_user(server: ServerProcess) -> str:
    async with server.client() as http:
        response = await http.post("/signups", json={"email": "reader@example.com", "name": "R"})
        user_id: str = response.json()["id"]
        return user_id


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4, help="rounds per pair")
    parser.add_argument("--requests", type=int, default=1500, help="per variant and round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--redis",
        action=argparse.BooleanOptionalAction,
        default=shutil.which("redis-server") is not None,
        help="also count in Redis (needs redis-server)",
    )
    args = parser.parse_args()

    # (storage, variant label) -> one Measured per round
    results: dict[tuple[str, str], list[Measured]] = {}
    with (
        tempfile.TemporaryDirectory() as scratch,
        postgres_database() as (cluster, url),
        smtp_sink() as smtp_port,
        redis_uri(args.redis) as redis,
        contextlib.ExitStack() as running,
    ):
        env = {
            "DATABASE_URL": url,
            "DATA_DIR": scratch,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "TASK_BACKLOG_LIMIT": "100000",
            "BOOTSTRAP_API_KEY": SERVER_KEY,
            "SIGNUP_RATE_LIMIT": NEVER_REFUSED,
            "API_KEY_RATE_LIMIT": NEVER_REFUSED,
        }
        servers = {"memory": running.enter_context(app_server(env, Path(scratch)))}
        if redis is not None:
            log_dir = Path(scratch) / "redis-counted"
            log_dir.mkdir()
            redis_env = {**env, "RATE_LIMIT_STORAGE_URI": redis}
            servers["Redis"] = running.enter_context(app_server(redis_env, log_dir))
        bench = Bench(
            cluster, url.rsplit("/", 1)[1], asyncio.run(first_user(servers["memory"])), args
        )
        for storage, server in servers.items():  # warm-up: connections, caches
            for variant in (CHECKED_READ, UNCHECKED_READ):
                bench.measure(server, variant, f"warm-{storage}")
        for round_number in range(args.rounds):
            for storage, server in servers.items():
                for pair in PAIRS:
                    ordered = pair if round_number % 2 == 0 else pair[::-1]
                    for variant in ordered:
                        run = f"{storage}-{round_number}-{variant.path}"
                        measured = bench.measure(server, variant, run)
                        results.setdefault((storage, variant.label), []).append(measured)
                        print(
                            f"  round {round_number + 1} {storage:<6} {variant.label[:3]} "
                            f"{measured.load.throughput:6.0f} req/s  "
                            f"errors {measured.load.errors}"
                        )

    print()
    print(
        f"Key check and rate limits, {machine_summary()}, {args.concurrency} concurrent "
        f"clients, {args.requests} requests per variant and round, {args.rounds} rounds"
    )
    print()
    print(report(list(servers), results))


def report(storages: list[str], results: dict[tuple[str, str], list[Measured]]) -> str:
    rows = []
    for storage in storages:
        for checked, unchecked in PAIRS:
            base = results[(storage, unchecked.label)]
            for variant in (checked, unchecked):
                runs = results[(storage, variant.label)]
                ratios = [
                    run.load.throughput / other.load.throughput
                    for run, other in zip(runs, base, strict=True)
                ]
                load = merged([run.load for run in runs])
                cpu_ms = sum(run.server_cpu for run in runs) / load.requests * 1000
                base_cpu_ms = sum(run.server_cpu for run in base) / load.requests * 1000
                rows.append(
                    [
                        storage,
                        variant.label,
                        load.throughput,
                        f"{statistics.median(ratios):.2f}x",
                        " ".join(f"{ratio:.2f}" for ratio in ratios),
                        load.p50 * 1000,
                        load.p99 * 1000,
                        cpu_ms,
                        f"{cpu_ms - base_cpu_ms:+.2f}",
                        load.errors,
                    ]
                )
    return table(
        [
            "counts in",
            "endpoint",
            "req/s",
            "req/s vs off (median)",
            "each round",
            "p50 ms",
            "p99 ms",
            "app CPU ms/req",
            "CPU vs off",
            "errors",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
