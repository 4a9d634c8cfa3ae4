"""Benchmark: scaling out. One web process vs two, one worker vs two, and how soon a worker
sends what a web process owes.

    uv run python -m bench.scaling

All on one PostgreSQL, every process started here as it would run on a
machine of its own (its own DATA_DIR), in the same run:

1. Signups per second through one pure web process (SERVE_BACKGROUND_WORK=false)
   and through two, a round-robin client spreading the requests; no worker
   runs meanwhile, so this is the web tier alone (each signup still commits its
   owed email and sends its NOTIFY).
2. A backlog of owed welcome emails drained by one worker and by two, into
   an SMTP server that answers at once: messages per second and the ratio.
3. Signup to welcome email sent (the user's created_at to its
   welcome_succeeded_at, both the database's record), one signup at a time:
   sent by `serve`'s own BackgroundTask (the default, one process) and by a
   worker woken through LISTEN/NOTIFY from a pure web process.
"""

import argparse
import asyncio
import functools
import itertools
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from app.tasks.wake import CHANNEL
from bench.common import LoadResult, cpu_sample, machine_summary, postgres_database, smtp_sink
from bench.common import table as markdown_table
from bench.recovery_drain import insert_owed
from tests.support.keys import NO_RATE_LIMITS, SERVER_KEY
from tests.support.postgres import PostgresCluster
from tests.support.server import ServerProcess, WorkerProcess

CONCURRENCY = 32


def listeners(cluster: PostgresCluster, database: str) -> int:
    """Connections LISTENing for owed work: one per worker that is ready."""
    return int(
        cluster.psql(
            f"SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN \"{CHANNEL}\"'",  # noqa: S608
            database=database,
        )
    )


def more_listeners(cluster: PostgresCluster, database: str, *, than: int) -> bool:
    return listeners(cluster, database) > than


@contextmanager
def started(
    processes: Sequence[ServerProcess], cluster: PostgresCluster, database: str
) -> Iterator[Sequence[ServerProcess]]:
    try:
        for process in processes:
            if isinstance(process, WorkerProcess):
                before = listeners(cluster, database)
                process.start(
                    ready=functools.partial(more_listeners, cluster, database, than=before)
                )
            else:
                process.start()
        yield processes
    finally:
        for process in processes:
            process.stop()


def web(env: dict[str, str], folder: Path, name: str, *, background: bool) -> ServerProcess:
    own = {
        **env,
        "DATA_DIR": str(folder / name),
        "SERVE_BACKGROUND_WORK": str(background).lower(),
    }
    return ServerProcess(own, folder / f"{name}.log")


def worker(env: dict[str, str], folder: Path, name: str) -> WorkerProcess:
    return WorkerProcess({**env, "DATA_DIR": str(folder / name)}, folder / f"{name}.log")


async def round_robin(base_urls: list[str], *, total: int, tag: str) -> LoadResult:
    """CONCURRENCY clients, request n to server n mod len(base_urls), each client sending its
    next signup when the last one answered."""
    counter = iter(range(total))
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {SERVER_KEY}"}  # not the anonymous per-address limit
    clients = [
        httpx.AsyncClient(base_url=url, limits=limits, timeout=60, headers=headers)
        for url in base_urls
    ]
    try:

        async def one_client() -> None:
            nonlocal errors
            for number in counter:
                client = clients[number % len(clients)]
                signup = {"email": f"{tag}-{number}@example.com", "name": "Bench"}
                began = time.perf_counter()
                try:
                    response = await client.post("/signups", json=signup)
                except httpx.TransportError:
                    # A keep-alive connection the server closed as it was reused: once more.
                    response = await client.post("/signups", json=signup)
                latencies.append(time.perf_counter() - began)
                errors += response.status_code != 201

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
    finally:
        for client in clients:
            await client.aclose()
    return LoadResult(total, errors, elapsed, latencies)


def empty(cluster: PostgresCluster, database: str) -> None:
    cluster.psql("TRUNCATE users, audit_entries, idempotency_keys CASCADE", database=database)


def signups(
    cluster: PostgresCluster, database: str, env: dict[str, str], folder: Path, total: int
) -> list[list[object]]:
    rows: list[list[object]] = []
    rates: dict[int, float] = {}
    for count, round_number in itertools.product((1, 2), range(2)):
        empty(cluster, database)
        servers = [web(env, folder, f"web-{count}-{n}", background=False) for n in range(count)]
        with started(servers, cluster, database):
            asyncio.run(round_robin([s.base_url for s in servers], total=200, tag="warm"))
            cpu = [cpu_sample(s.process.pid).process for s in servers if s.process]
            result = asyncio.run(
                round_robin([s.base_url for s in servers], total=total, tag=f"r{round_number}")
            )
            cpu_used = sum(
                cpu_sample(s.process.pid).process - before
                for s, before in zip(servers, cpu, strict=True)
                if s.process
            )
        assert result.errors == 0, result.errors
        rates[count] = rates.get(count, 0) + result.throughput / 2
        print(f"  signups through {count} web process(es): {result.throughput:,.0f}/s")
        if round_number == 1:
            rows.append(
                [
                    f"{count} web process{'es' if count > 1 else ''}",
                    rates[count],
                    f"{rates[count] / rates[1]:.2f}x",
                    f"{result.p50 * 1000:.1f}",
                    f"{result.p99 * 1000:.1f}",
                    f"{cpu_used / total * 1000:.2f}",
                ]
            )
    return rows


def owed(cluster: PostgresCluster, database: str) -> int:
    """Welcome emails not sent yet."""
    return int(
        cluster.psql(
            "SELECT count(*) FROM users WHERE welcome_status <> 'succeeded'", database=database
        )
    )


def drain(
    cluster: PostgresCluster, database: str, env: dict[str, str], folder: Path, messages: int
) -> list[list[object]]:
    rows: list[list[object]] = []
    rates: dict[int, float] = {}
    for count, round_number in itertools.product((1, 2), range(2)):
        empty(cluster, database)
        workers = [worker(env, folder, f"worker-{count}-{n}") for n in range(count)]
        with started(workers, cluster, database):
            cpu = [cpu_sample(w.process.pid).process for w in workers if w.process]
            began = time.perf_counter()
            insert_owed(cluster, database, messages, f"d{count}{round_number}")
            while owed(cluster, database):
                time.sleep(0.05)
            seconds = time.perf_counter() - began
            cpu_used = sum(
                cpu_sample(w.process.pid).process - before
                for w, before in zip(workers, cpu, strict=True)
                if w.process
            )
        rate = messages / seconds
        rates[count] = rates.get(count, 0) + rate / 2
        print(f"  drain by {count} worker(s): {rate:,.0f} msg/s")
        if round_number == 1:
            rows.append(
                [
                    f"{count} worker{'s' if count > 1 else ''}",
                    rates[count],
                    f"{rates[count] / rates[1]:.2f}x",
                    f"{cpu_used / messages * 1000:.2f}",
                ]
            )
    return rows


def latencies(cluster: PostgresCluster, database: str) -> list[float]:
    text = cluster.psql(
        "SELECT extract(epoch FROM welcome_succeeded_at - created_at) FROM users "
        "WHERE welcome_status = 'succeeded'",
        database=database,
    )
    return sorted(float(line) for line in text.split())


async def one_at_a_time(base_url: str, total: int, tag: str) -> None:
    headers = {"Authorization": f"Bearer {SERVER_KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        for number in range(total):
            response = await client.post(
                "/signups", json={"email": f"{tag}-{number}@example.com", "name": "Bench"}
            )
            assert response.status_code == 201
            await asyncio.sleep(0.02)  # a steady trickle, not a burst


def signup_to_email(
    cluster: PostgresCluster, database: str, env: dict[str, str], folder: Path, total: int
) -> list[list[object]]:
    rows: list[list[object]] = []
    setups: dict[str, list[ServerProcess]] = {
        "serve, BackgroundTask in the same process": [
            web(env, folder, "serve-alone", background=True)
        ],
        "pure web process + worker (LISTEN/NOTIFY)": [
            web(env, folder, "web-notify", background=False),
            worker(env, folder, "worker-notify"),
        ],
    }
    for number, (name, processes) in enumerate(setups.items()):
        empty(cluster, database)
        with started(processes, cluster, database) as running:
            asyncio.run(one_at_a_time(running[0].base_url, total, tag=f"latency{number}"))
            deadline = time.monotonic() + 60
            while owed(cluster, database) and time.monotonic() < deadline:
                time.sleep(0.05)
        seconds = latencies(cluster, database)
        assert len(seconds) == total, (name, len(seconds))
        p50, p99 = (
            seconds[len(seconds) // 2],
            seconds[min(len(seconds) - 1, len(seconds) * 99 // 100)],
        )
        print(f"  {name}: signup to email p50 {p50 * 1000:.1f} ms")
        rows.append([name, f"{p50 * 1000:.1f}", f"{p99 * 1000:.1f}", f"{seconds[-1] * 1000:.1f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--signups", type=int, default=3000, help="per measured round")
    parser.add_argument("--messages", type=int, default=5000, help="owed emails per drain")
    parser.add_argument("--latency-signups", type=int, default=200)
    args = parser.parse_args()

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        cluster, url = stack.enter_context(postgres_database())
        smtp_port = stack.enter_context(smtp_sink())
        database = url.rsplit("/", 1)[1]
        env = {
            "DATABASE_URL": url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "BOOTSTRAP_API_KEY": SERVER_KEY,
            "LOG_LEVEL": "WARNING",
            "RECOVERY_INTERVAL_SECONDS": "1",
            "PRUNE_INTERVAL_SECONDS": "0",
            **NO_RATE_LIMITS,  # the limits are not what is measured
        }
        print("signups, round-robin over the web processes ...")
        signup_rows = signups(cluster, database, env, folder, args.signups)
        print("draining owed welcome emails ...")
        drain_rows = drain(cluster, database, env, folder, args.messages)
        print("signup to welcome email ...")
        latency_rows = signup_to_email(cluster, database, env, folder, args.latency_signups)

    print()
    print(f"Scaling out on one PostgreSQL, {machine_summary()}")
    print()
    print(
        f"Signups, {CONCURRENCY} concurrent clients round-robin, "
        f"mean of 2 rounds of {args.signups:,}:"
    )
    print()
    print(
        markdown_table(
            ["web tier", "signups/s", "vs one", "p50 ms", "p99 ms", "web CPU ms/signup"],
            signup_rows,
        )
    )
    print()
    print(f"Draining {args.messages:,} owed welcome emails, mean of 2 rounds:")
    print()
    print(markdown_table(["workers", "messages/s", "vs one", "worker CPU ms/message"], drain_rows))
    print()
    print(f"Signup to welcome email sent, {args.latency_signups} signups one at a time:")
    print()
    print(markdown_table(["who sends", "p50 ms", "p99 ms", "max ms"], latency_rows))


if __name__ == "__main__":
    main()
