r"""Benchmark: a CSV import through the API against psql \copy into the same table.

    uv run python -m bench.uploads [--rows 1000000] [--rounds 3]

A generated CSV (~1% invalid rows, ~1% repeated addresses) is uploaded to a
real server process and imported into PostgreSQL (send_welcome=false), timed
from the start of the POST until GET /uploads/{id} says succeeded. In the
same run, psql's \copy loads the same valid, distinct rows into the same
`users` table (same indexes, emptied before each load), as fast as
PostgreSQL takes a file. Both are measured in users created per second. The
large file is loaded both ways in `--rounds` interleaved rounds, each
round's ratio from its own pair, and the median ratio is the figure (one
round swings by a tenth on a shared 2-core machine). Targets, checked at the
end (the exit status is 1 if one is missed): the API at >= 0.8x \copy on the
large file; the server's peak RSS (its process tree: the server and its CSV
worker) growing <= 50 MB from a tenth of the rows to all of them; GET
/healthz p99 under 50 ms during the import. A 10-row upload first starts the
CSV worker (timed on its own row), so the measured imports show the steady
state. The file goes into the database with its upload and comes back from
there: the timing includes both.

The files are generated into a temporary folder and deleted afterwards.
"""

import argparse
import asyncio
import csv
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import app_server, cpu_sample, machine_summary, postgres_database, table
from tests.support.keys import SERVER_KEY
from tests.support.postgres import PostgresCluster

AUTH = {"Authorization": f"Bearer {SERVER_KEY}"}
TARGET_VS_COPY = 0.8
TARGET_RSS_GROWTH_MB = 50.0
TARGET_HEALTHZ_P99_MS = 50.0

COPY_COLUMNS = (
    "id, email, name, created_at, welcome_status, welcome_generation, welcome_attempts, "
    "welcome_next_attempt_at"
)


@dataclass(frozen=True)
class Files:
    upload: Path  # what the API gets: every row, good or bad
    copy: Path  # what \copy gets: the valid, distinct rows, every column filled in
    rows: int
    valid: int


def generate(folder: Path, rows: int) -> Files:
    upload, copy = folder / f"people-{rows}.csv", folder / f"copy-{rows}.csv"
    valid = 0
    with upload.open("w", newline="") as up, copy.open("w", newline="") as cp:
        people, loaded = csv.writer(up), csv.writer(cp)
        people.writerow(["email", "name"])
        for n in range(rows):
            if n % 100 == 42:
                people.writerow([f"not-an-email-{n}", f"Person {n}"])
            elif n % 100 == 77:
                people.writerow([f"PERSON{n - 1}@Example.com", f"Again {n}"])
            else:
                email, name = f"person{n}@example.com", f"Person Number {n}"
                people.writerow([email, name])
                # As a silent import stores them: no welcome email owed (NULL status).
                loaded.writerow([uuid.uuid4(), email, name, "2026-11-22 00:00:00+00", "", 0, 0, ""])
                valid += 1
    return Files(upload, copy, rows, valid)


def empty_users(cluster: PostgresCluster, database: str) -> None:
    cluster.psql("TRUNCATE users, uploads CASCADE; CHECKPOINT", database=database)


def psql_copy(cluster: PostgresCluster, database: str, files: Files) -> float:
    """Seconds for \\copy to load the valid rows."""
    empty_users(cluster, database)
    started = time.perf_counter()
    subprocess.run(
        [
            str(cluster.bindir / "psql"), "-X", "-q", "-h", "127.0.0.1",
            "-p", str(cluster.port), "-U", cluster.user, "-d", database,
            "-v", "ON_ERROR_STOP=1",
            "-c", f"\\copy users ({COPY_COLUMNS}) FROM '{files.copy}' WITH (FORMAT csv)",
        ],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - started


@dataclass(frozen=True)
class Import:
    seconds: float
    imported: int
    peak_rss_mb: float
    cpu_seconds: float
    health: list[float]


async def api_import(
    cluster: PostgresCluster, database: str, base_url: str, pid: int, files: Files
) -> Import:
    empty_users(cluster, database)
    stop = asyncio.Event()
    health = asyncio.create_task(sample_health(base_url, stop))
    peak = asyncio.create_task(peak_rss(pid, stop))
    cpu_before = tree_cpu(pid)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, headers=AUTH) as http:
        started = time.perf_counter()
        with files.upload.open("rb") as file:
            response = await http.post(
                "/uploads",
                files={"file": (files.upload.name, file, "text/csv")},
                data={"send_welcome": "false"},
            )
        response.raise_for_status()
        body = await until_settled(http, response.headers["location"], poll=0.05)
        seconds = time.perf_counter() - started
    stop.set()
    assert body["status"] == "succeeded", body
    return Import(
        seconds=seconds,
        imported=body["rows_imported"],
        peak_rss_mb=await peak,
        cpu_seconds=tree_cpu(pid) - cpu_before,
        health=await health,
    )


async def first_upload(base_url: str) -> float:
    """Seconds for a 10-row upload to be imported by a server that has imported nothing yet.

    The first import starts the fork server and the CSV worker; the measured
    imports after it do not pay for that.
    """
    content = "email,name\n" + "".join(f"warm{n}@example.com,Warm {n}\n" for n in range(10))
    async with httpx.AsyncClient(base_url=base_url, timeout=60, headers=AUTH) as http:
        started = time.perf_counter()
        response = await http.post("/uploads", files={"file": ("warm.csv", content.encode())})
        await until_settled(http, response.headers["location"], poll=0.01)
        return time.perf_counter() - started


async def until_settled(http: httpx.AsyncClient, location: str, *, poll: float) -> dict[str, Any]:
    """Poll the upload until its import succeeded or failed."""
    while True:
        body: dict[str, Any] = (await http.get(location)).json()
        if body["status"] in {"succeeded", "failed"}:
            return body
        await asyncio.sleep(poll)


async def sample_health(base_url: str, stop: asyncio.Event, rate: float = 20) -> list[float]:
    """GET /healthz latencies, `rate` a second, until stopped."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        while not stop.is_set():
            started = time.perf_counter()
            (await http.get("/healthz")).raise_for_status()
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
    return latencies


async def idle_health(base_url: str, seconds: float) -> list[float]:
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_health(base_url, stop))
    await asyncio.sleep(seconds)
    stop.set()
    return await sampler


def tree(pid: int) -> list[int]:
    """The process and all its descendants (the fork server, the CSV workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def rss_mb(pid: int) -> float:
    total = 0
    for member in tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        total += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
        )
    return total / 1024


def tree_cpu(pid: int) -> float:
    total = 0.0
    for member in tree(pid):
        try:
            total += cpu_sample(member).process
        except OSError:
            continue
    return total


async def peak_rss(pid: int, stop: asyncio.Event) -> float:
    peak = 0.0
    while not stop.is_set():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.1)
    return peak


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the large file")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds on the large file (median)"
    )
    args = parser.parse_args()
    sizes = [args.rows // 10, args.rows]

    results: list[list[object]] = []
    with tempfile.TemporaryDirectory() as scratch, postgres_database() as (cluster, url):
        folder = Path(scratch)
        database = url.rsplit("/", 1)[1]
        print(f"generating {', '.join(f'{n:,}' for n in sizes)}-row files ...")
        files = [generate(folder, rows) for rows in sizes]
        env = {
            "DATABASE_URL": url,
            "DATA_DIR": str(folder / "data"),
            "UPLOAD_MAX_BYTES": str(1024**3),
            "BOOTSTRAP_API_KEY": SERVER_KEY,
        }
        with app_server(env, folder, app="app.main:create_server_app") as server:
            assert server.process is not None
            pid = server.process.pid
            before_rss = rss_mb(pid)
            cold = asyncio.run(first_upload(server.base_url))
            idle = asyncio.run(idle_health(server.base_url, 5))
            results += [
                ["-", "server before any upload", "-", "-", "-", f"{before_rss:.0f}",
                 "-", "-", "-"],
                ["10", "first upload (starts the CSV worker)", f"{cold:.2f}", "-", "-",
                 f"{rss_mb(pid):.0f}", "-", "-", "-"],
                ["-", "idle", "-", "-", "-", "-", "-",
                 f"{percentile(idle, 50) * 1000:.1f}", f"{percentile(idle, 99) * 1000:.1f}"],
            ]  # fmt: skip
            peaks: list[float] = []
            ratios: list[float] = []
            health_p99: list[float] = []
            for size in files:
                rounds = args.rounds if size is files[-1] else 1
                size_peaks, size_ratios = [], []
                for number in range(1, rounds + 1):
                    copy_seconds = psql_copy(cluster, database, size)
                    copy_rate = size.valid / copy_seconds
                    run = asyncio.run(api_import(cluster, database, server.base_url, pid, size))
                    assert run.imported == size.valid, (run.imported, size.valid)
                    rate = run.imported / run.seconds
                    print(
                        f"  {size.rows:>9,} rows, round {number}: \\copy {copy_rate:,.0f} users/s,"
                        f" API {rate:,.0f} users/s"
                    )
                    size_peaks.append(run.peak_rss_mb)
                    size_ratios.append(rate / copy_rate)
                    health_p99.append(percentile(run.health, 99) * 1000)
                    label = f"{size.rows:,}" + (f" (round {number})" if rounds > 1 else "")
                    results += [
                        [label, "psql \\copy (valid rows only)", f"{copy_seconds:.2f}",
                         f"{copy_rate:,.0f}", "1.00x", "-", "-", "-", "-"],
                        [label, "POST /uploads until succeeded", f"{run.seconds:.2f}",
                         f"{rate:,.0f}", f"{rate / copy_rate:.2f}x", f"{run.peak_rss_mb:.0f}",
                         f"{run.cpu_seconds:.1f}", f"{percentile(run.health, 50) * 1000:.1f}",
                         f"{percentile(run.health, 99) * 1000:.1f}"],
                    ]  # fmt: skip
                peaks.append(max(size_peaks))
                ratios.append(statistics.median(size_ratios))

    print()
    print(
        f"CSV import of {args.rows:,} rows (~1% invalid, ~1% repeated), PostgreSQL, "
        f"{machine_summary()}"
    )
    print()
    print(
        table(
            ["rows in file", "path", "seconds", "users/s", "vs \\copy", "peak RSS MB",
             "server CPU s", "/healthz p50 ms", "/healthz p99 ms"],
            results,
        )
    )  # fmt: skip
    print()
    growth = peaks[1] - peaks[0]
    print(
        f"Peak RSS growth from {sizes[0]:,} to {sizes[1]:,} rows: {growth:+.0f} MB "
        "(server and CSV worker together)"
    )
    print()
    checks = [
        (f"users/s vs \\copy, {sizes[1]:,} rows (median of {args.rounds})", f"{ratios[1]:.2f}x",
         f">= {TARGET_VS_COPY}x", ratios[1] >= TARGET_VS_COPY),
        ("peak RSS growth", f"{growth:+.0f} MB", f"<= {TARGET_RSS_GROWTH_MB:.0f} MB",
         growth <= TARGET_RSS_GROWTH_MB),
        ("/healthz p99 during the import", f"{max(health_p99):.1f} ms",
         f"< {TARGET_HEALTHZ_P99_MS:.0f} ms", max(health_p99) < TARGET_HEALTHZ_P99_MS),
    ]  # fmt: skip
    print(
        table(
            ["what", "measured", "target", "met"],
            [
                [name, value, target, "yes" if met else "MISSED"]
                for name, value, target, met in checks
            ],
        )
    )
    if not all(met for *_, met in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
