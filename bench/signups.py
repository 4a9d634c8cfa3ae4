"""Benchmark: does sending the welcome email in the background keep signups fast?

    uv run python -m bench.signups

Against a real uvicorn process and PostgreSQL, with an SMTP server that takes
200 ms to accept each message, four endpoints side by side in one run:

  (a) POST /signups                the product: email scheduled after commit
  (b) POST /bench/signups-inline   the same, but the email is sent before answering
  (c) POST /bench/insert-only      validation and one INSERT: the floor
  (d) POST /users/{id}/notifications   an email notification: key check,
                                   validation, commit, delivery scheduled, audit

each at a fixed moderate rate (open loop) and at saturation (32 concurrent
clients, closed loop), in rotating order, round after round. CPU is the
server process's plus its PostgreSQL backends', over the load and the drain
of the emails it owed (so (a) and (d) pay for their emails, and (c) sends none).

A request's own CPU is measured on a second server, started beside the first
from the same app with one change: the background work each request queues
(the welcome email, the audit entry) goes on a list that is never run, and
the recovery loop is off (its own database, so its owed emails stay owed).
(a) and (c) run there at saturation too, interleaved with the rest.

Targets: at saturation, (a)'s own CPU per request <= 1.2x (c)'s and throughput
>= 0.9x (c)'s, (d) throughput >= 0.8x (c)'s; at the moderate rate, (a) p50
<= 1.1x (c)'s. Each ratio is the median of the rounds' own ratios, each
round's variants run back to back. (b) shows the 200 ms. Exits 1 when a
target is missed.
"""

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    LoadResult,
    Send,
    ServiceCpu,
    Target,
    app_server,
    closed_loop,
    machine_summary,
    open_loop,
    postgres_database,
    smtp_sink,
    table,
    verdict,
)
from tests.support.keys import NO_RATE_LIMITS, SERVER_KEY, bearer
from tests.support.postgres import PostgresCluster

ENDPOINTS = {
    "a": ("POST /signups (background email)", "/signups"),
    "b": ("POST /bench/signups-inline (email before answering)", "/bench/signups-inline"),
    "c": ("POST /bench/insert-only (floor)", "/bench/insert-only"),
    "d": ("POST /users/{id}/notifications (email, background)", "/users/{id}/notifications"),
}
# Users (d) notifies, made once through (c).
RECIPIENTS = 100


def sender(key: str, run: str, recipients: list[str]) -> Send:
    path = ENDPOINTS[key][1]
    if key == "d":
        headers = bearer(SERVER_KEY)
        notification = {"channel": "email", "subject": "Your export is ready", "body": "Hello"}

        async def notify(client: httpx.AsyncClient, number: int) -> httpx.Response:
            user_path = path.format(id=recipients[number % len(recipients)])
            return await client.post(user_path, json=notification, headers=headers)

        return notify

    async def send(client: httpx.AsyncClient, number: int) -> httpx.Response:
        return await client.post(
            path, json={"email": f"{run}-{number}@example.com", "name": f"User {number}"}
        )

    return send


def wait_for_backlog(cluster: PostgresCluster, database: str, timeout: float) -> float:
    """Seconds until no email is pending, running or retrying."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        left = cluster.psql(
            "SELECT (SELECT count(*) FROM users"
            "        WHERE welcome_status IN ('pending','running','retrying'))"
            "     + (SELECT count(*) FROM notifications"
            "        WHERE status IN ('pending','running','retrying'))",
            database=database,
        )
        if left == "0":
            return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError("welcome emails did not drain")


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    # CPU seconds, including the background work drained after the load
    server_cpu: float
    backend_cpu: float


def measure_with_cpu(
    base_url: str, meter: ServiceCpu, key: str, mode: str, round_number: int, bench: "Bench"
) -> Measured:
    before = meter.read()
    load = asyncio.run(measure(base_url, key, mode, round_number, bench))
    if mode != "request":  # the request-only server sends nothing, so it owes for ever
        # The next variant must not pay for this one's background sends.
        wait_for_backlog(meter.cluster, meter.database, timeout=600)
    return Measured(load, *meter.read().since(before))


@dataclass(frozen=True)
class Bench:
    args: argparse.Namespace
    recipients: list[str]


async def measure(
    base_url: str, key: str, mode: str, round_number: int, bench: "Bench"
) -> LoadResult:
    args = bench.args
    send = sender(key, f"{key}{mode}{round_number}", bench.recipients)
    if mode == "moderate":
        return await open_loop(base_url, send, rate=args.rate, total=args.moderate_requests)
    return await closed_loop(
        base_url,
        send,
        concurrency=args.concurrency,
        total=args.saturation_requests,
    )


def make_recipients(base_url: str, count: int) -> list[str]:
    """Users for (d) to notify, made through the floor endpoint (their welcome counts as sent)."""
    with httpx.Client(base_url=base_url) as client:
        return [
            client.post(
                ENDPOINTS["c"][1], json={"email": f"recipient{n}@example.com", "name": "R"}
            ).json()["id"]
            for n in range(count)
        ]


def request_only_server(
    stack: contextlib.ExitStack, cluster: PostgresCluster, env: dict[str, str], scratch: Path
) -> tuple[str, ServiceCpu]:
    """The second server: same app, its background work queued and never run.

    Its own database, and no recovery loop, so the emails it leaves owed are
    never sent by anyone: what it spends is the request's own work.
    """
    from app.core import migrations  # noqa: PLC0415 - keep `--help` fast

    url = cluster.create_database("bench_request_only")
    migrations.upgrade(url)
    scratch.mkdir()
    quiet_env = {**env, "DATABASE_URL": url, "DATA_DIR": str(scratch)}
    quiet_env["RECOVERY_INTERVAL_SECONDS"] = "0"
    server = stack.enter_context(
        app_server(quiet_env, scratch, app="bench.app:create_request_only_app")
    )
    assert server.process is not None
    return server.base_url, ServiceCpu(cluster, "bench_request_only", [server.process.pid])


def run_rounds(
    args: argparse.Namespace, cluster: PostgresCluster, url: str, smtp_port: int, scratch: str
) -> dict[tuple[str, str], list[Measured]]:
    env = {
        "DATABASE_URL": url,
        "DATA_DIR": str(Path(scratch) / "full"),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_POOL_SIZE": str(args.smtp_pool_size),
        "NOTIFICATION_EMAIL_CONCURRENCY": str(args.smtp_pool_size),
        "TASK_BACKLOG_LIMIT": "100000",
        "LOG_LEVEL": "INFO",  # the default: what the service logs at work is part of its cost
        "BOOTSTRAP_API_KEY": SERVER_KEY,  # for (d)
        # Every signup comes from one address and (d) notifies each user many times:
        # the limits would refuse most of them, and the bench would measure 429s.
        **NO_RATE_LIMITS,
    }
    (Path(scratch) / "full").mkdir()
    database = url.rsplit("/", 1)[1]
    results: dict[tuple[str, str], list[Measured]] = {}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(app_server(env, Path(scratch) / "full"))
        assert server.process is not None
        meter = ServiceCpu(cluster, database, [server.process.pid])
        quiet = request_only_server(stack, cluster, env, Path(scratch) / "request-only")
        bench = Bench(args, make_recipients(server.base_url, RECIPIENTS))
        asyncio.run(measure(server.base_url, "c", "moderate", -1, bench))  # warm-up
        asyncio.run(measure(quiet[0], "c", "moderate", -1, bench))
        for round_number in range(args.rounds):
            for mode in ("moderate", "saturation", "request"):
                # Rotate the order each round so no variant always goes first.
                keys = ["a", "b", "c", "d"] if mode != "request" else ["a", "c"]
                keys = keys[round_number % len(keys) :] + keys[: round_number % len(keys)]
                for key in keys:
                    on = quiet if mode == "request" else (server.base_url, meter)
                    measured = measure_with_cpu(*on, key, mode, round_number, bench)
                    results.setdefault((key, mode), []).append(measured)
                    print_measured(round_number, mode, key, measured)
    return results


def print_measured(round_number: int, mode: str, key: str, measured: Measured) -> None:
    result = measured.load
    cpu = (measured.server_cpu + measured.backend_cpu) / result.requests
    print(
        f"  round {round_number + 1} {mode:<10} ({key}) "
        f"p50 {result.p50 * 1000:7.1f} ms  {result.throughput:7.0f} req/s  "
        f"CPU {cpu * 1000:.2f} ms/req"
    )


LOADS = {"moderate": "{rate:g} req/s", "saturation": "{concurrency} concurrent"}
LOADS["request"] = "{concurrency} concurrent, background work not run"


def report(args: argparse.Namespace, results: dict[tuple[str, str], list[Measured]]) -> int:
    print()
    print(
        f"Signups and notifications, {machine_summary()}, SMTP accepting each message after "
        f"{args.smtp_delay * 1000:.0f} ms, {args.rounds} interleaved rounds"
    )
    print()
    rows = []
    loads: dict[tuple[str, str], LoadResult] = {}
    cpu: dict[tuple[str, str], float] = {}
    for (key, mode), measured in sorted(results.items(), key=lambda item: item[0][::-1]):
        r = loads[(key, mode)] = merged([m.load for m in measured])
        server = sum(m.server_cpu for m in measured) / r.requests * 1000
        backend = sum(m.backend_cpu for m in measured) / r.requests * 1000
        cpu[(key, mode)] = server + backend
        row = [r.p50 * 1000, r.p99 * 1000, r.throughput, server, backend, server + backend]
        load = LOADS[mode].format(rate=args.rate, concurrency=args.concurrency)
        rows.append([load, f"({key}) {ENDPOINTS[key][0]}", *row, r.errors])
    headers = ["load", "endpoint", "p50 ms", "p99 ms", "req/s"]
    headers += ["CPU ms/req: server", "PostgreSQL", "total", "errors"]
    print(table(headers, rows))
    print()
    extra = cpu[("a", "saturation")] - cpu[("a", "request")]
    print(
        f"(a) at saturation costs {cpu[('a', 'saturation')]:.2f} ms with its background work, "
        f"{cpu[('a', 'request')]:.2f} ms without: {extra:.2f} ms is the welcome email "
        "(claim, send, settle) and the audit entry, run after the response. With it, "
        f"{cpu[('a', 'saturation')] / cpu[('c', 'saturation')]:.2f}x (c)."
    )
    print()
    return verdict(targets(loads, cpu, results))


def targets(
    loads: dict[tuple[str, str], LoadResult],
    cpu: dict[tuple[str, str], float],
    rounds: dict[tuple[str, str], list[Measured]],
) -> list[Target]:
    """Each target's ratio is the median of the rounds' own ratios (the pooled figures are
    shown beside it): one round disturbed by the rest of a shared machine moves it least."""

    def per_round(key: str, mode: str, figure: Callable[[Measured], float]) -> list[float]:
        pairs = zip(rounds[(key, mode)], rounds[("c", mode)], strict=True)
        return [figure(service) / figure(floor) for service, floor in pairs]

    def own_cpu(measured: Measured) -> float:
        return (measured.server_cpu + measured.backend_cpu) / measured.load.requests

    def throughput(measured: Measured) -> float:
        return measured.load.throughput

    def p50(measured: Measured) -> float:
        return measured.load.p50

    a, c, d = (loads[(key, "saturation")] for key in "acd")
    return [
        Target(
            "(a) vs (c): CPU ms per request, the request's own",
            cpu[("a", "request")],
            cpu[("c", "request")],
            1.2,
            False,
            per_round("a", "request", own_cpu),
        ),
        Target(
            "(a) vs (c): req/s, saturation",
            a.throughput,
            c.throughput,
            0.9,
            True,
            per_round("a", "saturation", throughput),
        ),
        Target(
            "(a) vs (c): p50 ms, moderate",
            loads[("a", "moderate")].p50 * 1000,
            loads[("c", "moderate")].p50 * 1000,
            1.1,
            False,
            per_round("a", "moderate", p50),
        ),
        Target(
            "(d) vs (c): req/s, saturation",
            d.throughput,
            c.throughput,
            0.8,
            True,
            per_round("d", "saturation", throughput),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per variant")
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
    with (
        tempfile.TemporaryDirectory() as scratch,
        postgres_database() as (cluster, url),
        smtp_sink(args.smtp_delay) as smtp_port,
    ):
        results = run_rounds(args, cluster, url, smtp_port, scratch)
    sys.exit(report(args, results))


def merged(results: list[LoadResult]) -> LoadResult:
    return LoadResult(
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        seconds=sum(r.seconds for r in results),
        latencies=[latency for r in results for latency in r.latencies],
    )


if __name__ == "__main__":
    main()
