"""The operator console: what it costs the JSON API, and how fast its pages load.

A database of 100,000 users (some owing or failing their welcome email),
1,000 uploads and 20,000 audit entries, on PostgreSQL. Two tables:

1. GET /users/{id} from 32 concurrent clients against (a) the service, (b) the
   same service with the console's routes taken out (bench.app), and (c) the
   service while five console tabs poll it as the pages do (work counts and
   the upload list every POLL_SECONDS). Interleaved rounds; the ratio is each
   round's against (b), and the median of them.
2. Each console page in Chromium, from navigation until its data is on screen
   (median of repeated loads), beside the server time of each fragment it
   fetches and of the JSON route with the same data.

    uv run python -m bench.console
"""

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from app.routers.console import POLL_SECONDS
from bench.common import app_server, closed_loop, machine_summary, postgres_database, table
from tests.support.keys import NO_RATE_LIMITS, SERVER_KEY
from tests.support.server import ServerProcess

USERS = 100_000
UPLOADS = 1_000
AUDIT = 20_000
TABS = 5
CHROMIUM = "/usr/bin/chromium"
AUTH = {"Authorization": f"Bearer {SERVER_KEY}"}

SEED = """
INSERT INTO users (id, email, name, created_at, welcome_status, welcome_generation,
                   welcome_attempts, welcome_next_attempt_at, welcome_succeeded_at,
                   welcome_last_error, welcome_failed_at)
SELECT gen_random_uuid(), 'person' || n || '@example.com', 'Person ' || n,
       now() - make_interval(secs => n),
       CASE WHEN n % 500 = 0 THEN 'failed' WHEN n % 997 = 0 THEN 'pending' ELSE 'succeeded' END,
       1, 1,
       CASE WHEN n % 997 = 0 AND n % 500 <> 0 THEN now() + interval '1 day' END,
       CASE WHEN n % 500 <> 0 AND n % 997 <> 0 THEN now() - make_interval(secs => n) END,
       CASE WHEN n % 500 = 0 THEN '550 5.1.1 no such mailbox' END,
       CASE WHEN n % 500 = 0 THEN now() - make_interval(secs => n) END
FROM generate_series(1, :users) AS n;

INSERT INTO uploads (id, filename, size_bytes, sha256, send_welcome, created_at,
                     status, attempts, next_offset, next_line, rows_total, rows_imported,
                     rows_duplicate, rows_rejected, started_at, succeeded_at)
SELECT gen_random_uuid(), 'people-' || n || '.csv', 3000000,
       repeat('0', 64), true, now() - make_interval(mins => n), 'succeeded', 1, 3000000,
       100001, 100000, 99000, 500, 500, now() - make_interval(mins => n),
       now() - make_interval(mins => n)
FROM generate_series(1, :uploads) AS n;

INSERT INTO audit_entries (id, occurred_at, actor, action, resource, details)
SELECT gen_random_uuid(), now() - make_interval(secs => n), 'bootstrap',
       CASE WHEN n % 3 = 0 THEN 'upload.created' ELSE 'user.signed_up' END,
       'users/' || gen_random_uuid(), '{}'
FROM generate_series(1, :audit) AS n;
ANALYZE;
"""

# Each page, what shows its data has arrived, and the fragments it loads with the
# JSON route that has the same data.
PAGES = {
    "/console": "#counts-table tbody tr",
    "/console/imports": "#uploads-table tbody tr",
    "/console/audit": "#audit-table tbody tr",
    "/console/people": "#main",
}
FRAGMENTS = [
    ("/console/tasks", "/admin/tasks"),
    ("/console/tasks/failed", "/admin/tasks/failed?limit=20"),
    ("/console/imports/uploads", "/uploads?limit=20"),
    ("/console/audit/entries", "/admin/audit?limit=20"),
    ("/console/people/search?query=person77%40example.com", "/users?email=person77%40example.com"),
]


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


async def console_tabs(base_url: str, stop: asyncio.Event) -> int:
    """TABS open console pages, each fetching the work counts and the uploads as the
    pages do, every POLL_SECONDS, until stopped; returns the requests made."""
    made = 0
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=60) as client:

        async def tab(offset: float) -> None:
            nonlocal made
            await asyncio.sleep(offset)
            while not stop.is_set():
                await client.get("/console/tasks")
                await client.get("/console/imports/uploads")
                made += 2
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)

        await asyncio.gather(*(tab(n * POLL_SECONDS / TABS) for n in range(TABS)))
    return made


async def api_load(
    server: ServerProcess, user_id: str, requests: int, concurrency: int, *, tabs: bool
) -> tuple[float, float, float]:
    async def send(client: httpx.AsyncClient, _: int) -> httpx.Response:
        return await client.get(f"/users/{user_id}", headers=AUTH)

    stop = asyncio.Event()
    polling = asyncio.create_task(console_tabs(server.base_url, stop)) if tabs else None
    load = await closed_loop(server.base_url, send, concurrency=concurrency, total=requests)
    stop.set()
    if polling is not None:
        await polling
    assert load.errors == 0
    return load.p50 * 1000, load.p99 * 1000, load.throughput


def fragment_times(server: ServerProcess, rounds: int) -> list[tuple[str, float, str, float]]:
    rows = []
    with httpx.Client(base_url=server.base_url, headers=AUTH, timeout=60) as client:
        for fragment, json_route in FRAGMENTS:
            times: dict[str, list[float]] = {fragment: [], json_route: []}
            for _ in range(rounds):
                for path in (fragment, json_route):
                    started = time.perf_counter()
                    response = client.get(path)
                    times[path].append(time.perf_counter() - started)
                    assert response.status_code == 200, (path, response.text[:200])
            rows.append(
                (fragment, median_ms(times[fragment]), json_route, median_ms(times[json_route]))
            )
    return rows


def page_loads(server: ServerProcess, loads: int) -> dict[str, float]:
    """Median ms from navigation until the page's data is shown, the key already in the tab."""
    results = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            for path, shown in PAGES.items():
                times = []
                for _ in range(loads + 1):  # the first warms the browser's cache
                    context = browser.new_context(viewport={"width": 1280, "height": 800})
                    context.add_init_script(
                        f"sessionStorage.setItem('signup-service.api-key', '{SERVER_KEY}')"
                    )
                    page = context.new_page()
                    started = time.perf_counter()
                    page.goto(server.base_url + path)
                    page.locator(shown).first.wait_for(state="visible", timeout=30_000)
                    times.append(time.perf_counter() - started)
                    context.close()
                results[path] = median_ms(times[1:])
        finally:
            browser.close()
    return results


@contextlib.contextmanager
def servers(url: str, scratch: Path) -> Iterator[dict[str, ServerProcess]]:
    env = {
        "DATABASE_URL": url,
        "DATA_DIR": str(scratch),
        "BOOTSTRAP_API_KEY": SERVER_KEY,
        "RECOVERY_INTERVAL_SECONDS": "0",
        **NO_RATE_LIMITS,
    }
    with contextlib.ExitStack() as running:
        folders = {name: scratch / name for name in ("with", "without")}
        for folder in folders.values():
            folder.mkdir()
        yield {
            "with": running.enter_context(
                app_server(env, folders["with"], app="app.main:create_server_app")
            ),
            "without": running.enter_context(
                app_server(env, folders["without"], app="bench.app:create_app_without_console")
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000, help="per variant and round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--loads", type=int, default=5, help="page loads per page")
    args = parser.parse_args()

    labels = {
        ("with", False): "(a) the service, console mounted",
        ("without", False): "(b) the same without the console's routes",
        ("with", True): f"(c) (a) while {TABS} console tabs poll it",
    }
    measured: dict[str, list[tuple[float, float, float]]] = {label: [] for label in labels.values()}
    with (
        tempfile.TemporaryDirectory() as scratch,
        postgres_database("console_bench") as (cluster, url),
    ):
        print(f"seeding {USERS:,} users, {UPLOADS:,} uploads, {AUDIT:,} audit entries")
        counts = {":users": USERS, ":uploads": UPLOADS, ":audit": AUDIT}
        seed = SEED
        for name, count in counts.items():
            seed = seed.replace(name, str(count))
        cluster.psql(seed, database="console_bench")
        with servers(url, Path(scratch)) as running:
            with httpx.Client(base_url=running["with"].base_url, headers=AUTH) as client:
                user_id = client.get("/users?email=person42%40example.com").json()["items"][0]["id"]
            for server in running.values():  # warm-up
                asyncio.run(api_load(server, user_id, 500, args.concurrency, tabs=False))
            for number in range(args.rounds):
                order = list(labels.items())
                if number % 2:
                    order.reverse()
                for (name, tabs), label in order:
                    result = asyncio.run(
                        api_load(running[name], user_id, args.requests, args.concurrency, tabs=tabs)
                    )
                    measured[label].append(result)
                    print(f"  round {number + 1} {label}: {result[2]:.0f} req/s")
            fragments = fragment_times(running["with"], rounds=10)
            pages = page_loads(running["with"], args.loads)

    baseline = measured[labels[("without", False)]]
    rows = []
    for label, results in measured.items():
        ratios = [result[2] / base[2] for result, base in zip(results, baseline, strict=True)]
        rows.append(
            (
                label,
                statistics.median(r[0] for r in results),
                statistics.median(r[1] for r in results),
                statistics.median(r[2] for r in results),
                f"{statistics.median(ratios):.2f}x",
                " ".join(f"{ratio:.2f}" for ratio in ratios),
            )
        )
    print()
    print(
        f"GET /users/{{id}}, {machine_summary()}, {args.concurrency} concurrent clients, "
        f"{args.requests} requests per variant and round, {args.rounds} rounds; "
        f"{USERS:,} users, {UPLOADS:,} uploads, {AUDIT:,} audit entries"
    )
    print()
    print(
        table(["variant", "p50 ms", "p99 ms", "req/s", "req/s vs (b), median", "each round"], rows)
    )
    print()
    print(f"Console pages in Chromium, median of {args.loads} loads; fragments: median of 10")
    print()
    print(table(["page", "until its data is shown, ms"], list(pages.items())))
    print()
    print(
        table(
            ["fragment", "ms", "JSON route with the same data", "ms", "fragment vs JSON"],
            [(f, fm, j, jm, f"{fm / jm:.2f}x") for f, fm, j, jm in fragments],
        )
    )


if __name__ == "__main__":
    main()
