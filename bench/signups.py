"""Benchmark: does sending the welcome email in the background keep signups fast?

    uv run python -m bench.signups

Against a real uvicorn process and PostgreSQL, with an SMTP server that takes
200 ms to accept each message, three endpoints side by side in one run:

  (a) POST /signups                the product: email scheduled after commit
  (b) POST /bench/signups-inline   the same, but the email is sent before answering
  (c) POST /bench/insert-only      validation and one INSERT: the floor

each at a fixed moderate rate (open loop) and at saturation (32 concurrent
clients, closed loop). Targets: (a) p50 <= 1.3x (c) p50; (a) throughput >=
0.7x (c); (b) shows the 200 ms.
"""

import argparse
import asyncio
import tempfile
import time
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
    open_loop,
    postgres_database,
    smtp_sink,
    table,
)
from tests.support.keys import NO_RATE_LIMITS
from tests.support.postgres import PostgresCluster
from tests.support.server import ServerProcess

ENDPOINTS = {
    "a": ("POST /signups (background email)", "/signups"),
    "b": ("POST /bench/signups-inline (email before answering)", "/bench/signups-inline"),
    "c": ("POST /bench/insert-only (floor)", "/bench/insert-only"),
}


def sender(path: str, run: str) -> Send:
    async def send(client: httpx.AsyncClient, number: int) -> httpx.Response:
        return await client.post(
            path, json={"email": f"{run}-{number}@example.com", "name": f"User {number}"}
        )

    return send


def wait_for_welcome_backlog(cluster: PostgresCluster, database: str, timeout: float) -> float:
    """Seconds until no welcome email is pending, running or retrying."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        left = cluster.psql(
            "SELECT count(*) FROM users WHERE welcome_status IN ('pending','running','retrying')",
            database=database,
        )
        if left == "0":
            return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError("welcome emails did not drain")


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    server_cpu: float  # server CPU seconds, including the background work it drained
    machine_cpu: float


def measure_with_cpu(
    server: ServerProcess,
    cluster: PostgresCluster,
    database: str,
    key: str,
    mode: str,
    round_number: int,
    args: argparse.Namespace,
) -> Measured:
    assert server.process is not None
    before = cpu_sample(server.process.pid)
    load = asyncio.run(measure(server.base_url, key, mode, round_number, args))
    # The next variant must not pay for this one's background sends.
    wait_for_welcome_backlog(cluster, database, timeout=600)
    after = cpu_sample(server.process.pid)
    return Measured(load, after.process - before.process, after.machine - before.machine)


async def measure(
    base_url: str, key: str, mode: str, round_number: int, args: argparse.Namespace
) -> LoadResult:
    send = sender(ENDPOINTS[key][1], f"{key}{mode}{round_number}")
    if mode == "moderate":
        return await open_loop(base_url, send, rate=args.rate, total=args.moderate_requests)
    return await closed_loop(
        base_url,
        send,
        concurrency=args.concurrency,
        total=args.saturation_requests,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant")
    parser.add_argument("--rate", type=float, default=50, help="moderate load, requests/s")
    parser.add_argument("--moderate-requests", type=int, default=250)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--saturation-requests", type=int, default=1500)
    parser.add_argument("--smtp-delay", type=float, default=0.2)
    parser.add_argument(
        "--smtp-pool-size",
        type=int,
        default=16,
        help="SMTP connections, i.e. emails in flight: enough for (b) to keep up at the "
        "moderate rate (16 x 5/s > 50/s)",
    )
    args = parser.parse_args()

    results: dict[tuple[str, str], list[Measured]] = {}
    with (
        tempfile.TemporaryDirectory() as scratch,
        postgres_database() as (cluster, url),
        smtp_sink(args.smtp_delay) as smtp_port,
    ):
        env = {
            "DATABASE_URL": url,
            "DATA_DIR": scratch,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_POOL_SIZE": str(args.smtp_pool_size),
            "TASK_BACKLOG_LIMIT": "100000",
            # Every signup comes from one address: the per-address limit would refuse
            # all but the first few, and (a) would measure 429s.
            **NO_RATE_LIMITS,
        }
        database = url.rsplit("/", 1)[1]
        with app_server(env, Path(scratch)) as server:
            asyncio.run(measure(server.base_url, "c", "moderate", -1, args))  # warm-up
            for round_number in range(args.rounds):
                for mode in ("moderate", "saturation"):
                    # Rotate the order each round so no variant always goes first.
                    keys = ["a", "b", "c"]
                    keys = keys[round_number % 3 :] + keys[: round_number % 3]
                    for key in keys:
                        measured = measure_with_cpu(
                            server, cluster, database, key, mode, round_number, args
                        )
                        results.setdefault((key, mode), []).append(measured)
                        result = measured.load
                        print(
                            f"  round {round_number + 1} {mode:<10} ({key}) "
                            f"p50 {result.p50 * 1000:7.1f} ms  {result.throughput:7.0f} req/s  "
                            f"server CPU {measured.server_cpu / result.requests * 1000:.2f} ms/req"
                        )

    print()
    print(
        f"Signups, {machine_summary()}, SMTP accepting each message after "
        f"{args.smtp_delay * 1000:.0f} ms, {args.rounds} interleaved rounds"
    )
    print()
    rows = []
    for mode in ("moderate", "saturation"):
        floor = merged([m.load for m in results[("c", mode)]])
        for key in ("a", "b", "c"):
            r = merged([m.load for m in results[(key, mode)]])
            server_cpu = sum(m.server_cpu for m in results[(key, mode)]) / r.requests * 1000
            machine_cpu = sum(m.machine_cpu for m in results[(key, mode)]) / r.requests * 1000
            load = (
                f"{args.rate:g} req/s" if mode == "moderate" else f"{args.concurrency} concurrent"
            )
            rows.append(
                [
                    load,
                    f"({key}) {ENDPOINTS[key][0]}",
                    r.p50 * 1000,
                    r.p99 * 1000,
                    r.throughput,
                    f"{r.p50 / floor.p50:.2f}x",
                    f"{r.throughput / floor.throughput:.2f}x",
                    server_cpu,
                    machine_cpu,
                    r.errors,
                ]
            )
    print(
        table(
            [
                "load",
                "endpoint",
                "p50 ms",
                "p99 ms",
                "req/s",
                "p50 vs (c)",
                "req/s vs (c)",
                "app CPU ms/req",
                "machine CPU ms/req",
                "errors",
            ],
            rows,
        )
    )


def merged(results: list[LoadResult]) -> LoadResult:
    return LoadResult(
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        seconds=sum(r.seconds for r in results),
        latencies=[latency for r in results for latency in r.latencies],
    )


if __name__ == "__main__":
    main()
