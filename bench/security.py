"""Benchmark: what the key check and the rate limits cost at saturation.

    uv run python -m bench.security [--requests 3000] [--concurrency 32] [--rounds 3]

Against a real uvicorn process and PostgreSQL, side by side in one run,
interleaved round after round, each at saturation (a closed loop of
`--concurrency` clients):

  (a) GET /users/{id} with an API key: the key looked up (cached), its
      scope checked, and the request counted against the key's rate
  (b) GET /bench/users-unchecked/{id}: the same route function, check off
  (c) POST /signups, counted against the client address's rate
  (d) POST /bench/signups-unlimited: the same route function, limit off

The rates are set high enough never to refuse, so every request is counted
and none is turned away. With --redis (the default where redis-server is
installed) a second server counts in Redis instead of memory, as replicas
do, and (a) and (c) are run against it too.

Targets: (a) >= 0.9x (b) and (c) >= 0.9x (d) in requests per second.
"""

import argparse
import asyncio
import contextlib
import shutil
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
    machine_summary,
    postgres_database,
    smtp_sink,
    table,
)
from bench.signups import merged, wait_for_welcome_backlog
from tests.support.keys import SERVER_KEY, bearer
from tests.support.redis import running_redis
from tests.support.server import ServerProcess

# Counted, never refused.
NEVER_REFUSED = "100000000/minute"


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    storage: str  # which server: "memory" or "redis"
    path: str  # for signups; for reads, the prefix before the user id
    signup: bool


VARIANTS = [
    Variant("a", "(a) GET /users/{id}, key checked and counted", "memory", "/users/", False),
    Variant("b", "(b) the same, check off", "memory", "/bench/users-unchecked/", False),
    Variant("c", "(c) POST /signups, address counted", "memory", "/signups", True),
    Variant("d", "(d) the same, limit off", "memory", "/bench/signups-unlimited", True),
    Variant("a-redis", "(a) with the counts in Redis", "redis", "/users/", False),
    Variant("c-redis", "(c) with the counts in Redis", "redis", "/signups", True),
]
BASELINE = {"a": "b", "c": "d", "a-redis": "b", "c-redis": "d"}


def sender(variant: Variant, user_id: str, run: str) -> Send:
    if variant.signup:

        async def signup(client: httpx.AsyncClient, number: int) -> httpx.Response:
            return await client.post(
                variant.path, json={"email": f"{run}-{number}@example.com", "name": "Ada"}
            )

        return signup

    async def read(client: httpx.AsyncClient, number: int) -> httpx.Response:
        # The key goes with both, so both read the same bytes off the wire.
        return await client.get(variant.path + user_id, headers=bearer(SERVER_KEY))

    return read


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
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant")
    parser.add_argument("--requests", type=int, default=3000, help="per variant and round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--redis",
        action=argparse.BooleanOptionalAction,
        default=shutil.which("redis-server") is not None,
        help="also count in Redis (needs redis-server)",
    )
    args = parser.parse_args()
    variants = [v for v in VARIANTS if args.redis or v.storage == "memory"]

    results: dict[str, list[LoadResult]] = {}
    with (
        tempfile.TemporaryDirectory() as scratch,
        postgres_database() as (cluster, url),
        smtp_sink() as smtp_port,
        redis_uri(args.redis) as redis,
        contextlib.ExitStack() as servers_stack,
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
        servers = {"memory": servers_stack.enter_context(app_server(env, Path(scratch)))}
        if redis is not None:
            redis_dir = Path(scratch) / "redis-server"
            redis_dir.mkdir()
            redis_env = {**env, "RATE_LIMIT_STORAGE_URI": redis}
            servers["redis"] = servers_stack.enter_context(app_server(redis_env, redis_dir))
        user_id = asyncio.run(first_user(servers["memory"]))
        database = url.rsplit("/", 1)[1]
        for server in servers.values():  # warm-up: connections, caches, first imports
            warm = Variant("w", "", "", "/users/", False)
            asyncio.run(measure(server, warm, user_id, "warm", args))
        for round_number in range(args.rounds):
            shift = round_number % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                server = servers[variant.storage]
                result = asyncio.run(
                    measure(server, variant, user_id, f"{variant.key}{round_number}", args)
                )
                if variant.signup:  # the next variant must not pay for these emails
                    wait_for_welcome_backlog(cluster, database, timeout=600)
                results.setdefault(variant.key, []).append(result)
                print(
                    f"  round {round_number + 1} ({variant.key:<7}) "
                    f"{result.throughput:7.0f} req/s  p50 {result.p50 * 1000:6.1f} ms  "
                    f"errors {result.errors}"
                )

    print()
    print(
        f"Key check and rate limits, {machine_summary()}, {args.concurrency} concurrent "
        f"clients, {args.requests} requests per variant and round, {args.rounds} rounds"
    )
    print()
    print(report(variants, results))


async def measure(
    server: ServerProcess, variant: Variant, user_id: str, run: str, args: argparse.Namespace
) -> LoadResult:
    return await closed_loop(
        server.base_url,
        sender(variant, user_id, run),
        concurrency=args.concurrency,
        total=args.requests,
    )


def report(variants: list[Variant], results: dict[str, list[LoadResult]]) -> str:
    rows = []
    for variant in variants:
        result = merged(results[variant.key])
        baseline = merged(results[BASELINE.get(variant.key, variant.key)])
        rows.append(
            [
                variant.label,
                result.throughput,
                f"{result.throughput / baseline.throughput:.2f}x",
                result.p50 * 1000,
                result.p99 * 1000,
                result.errors,
            ]
        )
    return table(["endpoint", "req/s", "vs check off", "p50 ms", "p99 ms", "errors"], rows)


if __name__ == "__main__":
    main()
