"""Shared benchmark machinery: real servers started here, a load generator, a table printer.

Every benchmark compares variants side by side in one run, because a shared
2-core machine is too noisy for absolute numbers to mean much on their own.
"""

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from tests.support.postgres import PostgresCluster, free_port
from tests.support.server import PROJECT_ROOT, ServerProcess


@contextlib.contextmanager
def postgres_database(name: str = "bench") -> Iterator[tuple[PostgresCluster, str]]:
    """A throwaway PostgreSQL server with one migrated database."""
    from app.core import migrations  # noqa: PLC0415 - keep `--help` fast

    cluster = PostgresCluster()
    try:
        cluster.start()
        url = cluster.create_database(name)
        migrations.upgrade(url)
        yield cluster, url
    finally:
        cluster.remove()


@contextlib.contextmanager
def smtp_sink(delay: float = 0.0) -> Iterator[int]:
    """A real SMTP server in its own process (so it does not share our GIL); yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.smtp_sink", "--port", str(port), "--delay", str(delay)],
        cwd=PROJECT_ROOT,
    )
    try:
        _wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    import socket  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


@contextlib.contextmanager
def app_server(
    env: dict[str, str], log_dir: Path, *, app: str = "bench.app:create_bench_app"
) -> Iterator[ServerProcess]:
    """uvicorn serving `app` (a factory) as its own process, without access logs."""
    command = [
        sys.executable, "-m", "uvicorn", app, "--factory",
        "--host", "127.0.0.1", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    server = ServerProcess(
        {"LOG_LEVEL": "WARNING", **env}, log_dir / "server.log", command=command
    ).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        return self.percentile(99)


# Sends request number n with the given client.
Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def closed_loop(base_url: str, send: Send, *, concurrency: int, total: int) -> LoadResult:
    """`concurrency` clients, each sending its next request when the last one answered."""
    counter = iter(range(total))
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal errors
            for number in counter:
                started = time.perf_counter()
                response = await send(client, number)
                latencies.append(time.perf_counter() - started)
                if response.status_code >= 400:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(total, errors, elapsed, latencies)


async def open_loop(base_url: str, send: Send, *, rate: float, total: int) -> LoadResult:
    """Requests started at a fixed rate, whatever the answers: a moderate, steady load."""
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

        async def one(number: int) -> None:
            nonlocal errors
            started = time.perf_counter()
            response = await send(client, number)
            latencies.append(time.perf_counter() - started)
            if response.status_code >= 400:
                errors += 1

        began = time.perf_counter()
        tasks = []
        for number in range(total):
            delay = began + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(number)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    return LoadResult(total, errors, elapsed, latencies)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, pasteable into the README."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


@dataclass(frozen=True)
class CpuSample:
    process: float  # seconds of CPU used by one process
    machine: float  # seconds of CPU used by the whole machine (all cores, all processes)


def cpu_sample(pid: int) -> CpuSample:
    """CPU seconds so far, of one process and of the machine, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    process = (int(fields[11]) + int(fields[12])) / ticks
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for v in cpu) - int(cpu[3]) - int(cpu[4])  # minus idle and iowait
    return CpuSample(process, busy / ticks)


def machine_summary() -> str:
    return f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"


def process_cpu(pid: int) -> float:
    """CPU seconds one process has used so far; 0 if it is gone."""
    try:
        return cpu_sample(pid).process
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


@dataclass(frozen=True)
class CpuReading:
    service: dict[int, float]  # CPU seconds so far, per service process
    backends: dict[int, float]  # the same, per PostgreSQL backend serving it

    def since(self, before: "CpuReading") -> tuple[float, float]:
        """(service, backends) CPU seconds used since `before`; a backend that
        appeared meanwhile counts from its start."""
        return _delta(before.service, self.service), _delta(before.backends, self.backends)


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class Watcher:
    """Queries the bench polls while the service works, over one kept connection.

    psql starts a process and a backend per look: twenty looks a second took
    CPU from the service on a 2-core machine, and not from the baseline, which
    nobody polls. Its backend has no application_name, so ServiceCpu leaves it out.
    """

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        self._connection = self._loop.run_until_complete(asyncpg.connect(dsn))

    def value(self, sql: str) -> object:
        return self._loop.run_until_complete(self._connection.fetchval(sql))

    def wait_until(self, sql: str, *, pause: float = 0.05, timeout: float = 600) -> None:
        """Poll until `sql` answers true."""
        deadline = time.monotonic() + timeout
        while not self.value(sql):
            if time.monotonic() > deadline:
                raise TimeoutError(sql)
            time.sleep(pause)

    def close(self) -> None:
        self._loop.run_until_complete(self._connection.close())
        self._loop.close()


@contextlib.contextmanager
def watching(url: str) -> Iterator[Watcher]:
    watcher = Watcher(url)
    try:
        yield watcher
    finally:
        watcher.close()


class ServiceCpu:
    """CPU of the service's processes plus their PostgreSQL backends.

    A queue kept in the database spends CPU in the database server too;
    counting only the Python process would flatter it against a loop with no
    database. The backends are found by the application_name the service
    connects with (psql's own, the bench's, are not counted).
    """

    def __init__(self, cluster: PostgresCluster, database: str, pids: Sequence[int]) -> None:
        self.cluster = cluster
        self.database = database
        self.pids = list(pids)

    def read(self) -> CpuReading:
        out = self.cluster.psql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'signup-service'"
            " AND datname = current_database()",
            database=self.database,
        )
        return CpuReading(
            service={pid: process_cpu(pid) for pid in self.pids},
            backends={int(pid): process_cpu(int(pid)) for pid in out.split()},
        )


@dataclass(frozen=True)
class Target:
    """One target: the service's figure against the baseline's, from the same run.

    With `per_round` (the ratio of each interleaved round), the ratio is their
    median: on a shared machine one disturbed round then moves it least.
    """

    name: str
    service: float
    baseline: float
    limit: float
    higher_is_better: bool
    per_round: Sequence[float] = ()

    @property
    def ratio(self) -> float:
        if self.per_round:
            return statistics.median(self.per_round)
        return self.service / self.baseline

    @property
    def met(self) -> bool:
        return self.ratio >= self.limit if self.higher_is_better else self.ratio <= self.limit


def verdict(targets: Sequence[Target]) -> int:
    """Print the targets as a table; the exit status: 0 when every one is met."""
    print(
        table(
            ["target", "service", "baseline", "ratio", "limit", "met", "per round"],
            [
                [
                    t.name,
                    t.service,
                    t.baseline,
                    f"{t.ratio:.2f}x",
                    f"{'>=' if t.higher_is_better else '<='} {t.limit:g}x",
                    "yes" if t.met else "NO",
                    " ".join(f"{ratio:.2f}" for ratio in t.per_round) or "-",
                ]
                for t in targets
            ],
        )
    )
    return 0 if all(t.met for t in targets) else 1
