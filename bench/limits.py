"""Benchmark: what the request limits and security headers cost each request.

    uv run python -m bench.limits

Two servers side by side on the embedded default (SQLite, local mail
capture), in interleaved rounds, 32 concurrent clients each:

  (a) `python -m app serve`: uvicorn with the head limits (app/core/connection_limits.py),
      the body limits and the security headers (the product);
  (b) plain uvicorn, and the same app without those two middlewares.

GET /healthz shows the overhead on its own (no database); POST /signups
shows it beside real work. Target: (a) within 5% of (b)'s throughput.
"""

import argparse
import asyncio
import contextlib
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
from fastapi import FastAPI

from app.core import migrations
from app.core.request_limits import RequestLimitsMiddleware
from app.core.security_headers import SecurityHeadersMiddleware
from app.main import create_server_app
from bench.common import LoadResult, Send, app_server, closed_loop, cpu_sample, table
from tests.support.server import ServerProcess

CONCURRENCY = 32


def create_unguarded_app() -> FastAPI:
    """The service without the body limits and the security headers: (b) only."""
    app = create_server_app()
    guards: tuple[object, ...] = (RequestLimitsMiddleware, SecurityHeadersMiddleware)
    app.user_middleware = [m for m in app.user_middleware if m.cls not in guards]
    return app


async def healthz(client: httpx.AsyncClient, number: int) -> httpx.Response:
    return await client.get("/healthz")


def signups(run: str) -> Send:
    async def send(client: httpx.AsyncClient, number: int) -> httpx.Response:
        return await client.post(
            "/signups", json={"email": f"{run}-{number}@example.com", "name": f"User {number}"}
        )

    return send


def measure(server: ServerProcess, send: Send, total: int) -> tuple[LoadResult, float]:
    assert server.process is not None
    before = cpu_sample(server.process.pid)
    result = asyncio.run(closed_loop(server.base_url, send, concurrency=CONCURRENCY, total=total))
    used = cpu_sample(server.process.pid).process - before.process
    return result, used * 1000 / total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--healthz", type=int, default=4000, help="requests per round")
    parser.add_argument("--signups", type=int, default=1500, help="requests per round")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        root = Path(folder)
        (root / "b" / "data").mkdir(parents=True)
        # Plain uvicorn does not migrate the embedded default; `serve` does, for (a).
        migrations.upgrade(f"sqlite+aiosqlite:///{root / 'b' / 'data' / 'signup-service.db'}")
        servers = {
            "a": stack.enter_context(_serve(root / "a")),
            "b": stack.enter_context(
                app_server(
                    {"DATA_DIR": str(root / "b" / "data")},
                    root / "b",
                    app="bench.limits:create_unguarded_app",
                )
            ),
        }
        results: dict[tuple[str, str], list[tuple[LoadResult, float]]] = {}
        for round_number in range(args.rounds):
            for load, total in (("GET /healthz", args.healthz), ("POST /signups", args.signups)):
                for name, server in servers.items():
                    send = healthz if load == "GET /healthz" else signups(f"{name}{round_number}")
                    result, cpu = measure(server, send, total)
                    assert result.errors == 0, (name, load, result.errors)
                    results.setdefault((load, name), []).append((result, cpu))
                    print(f"  round {round_number}: {load:<13} ({name}) {result.throughput:7.0f}/s")

    rows = []
    for load in ("GET /healthz", "POST /signups"):
        floor = statistics.median(r.throughput for r, _ in results[(load, "b")])
        for name, label in (("a", "(a) with the limits"), ("b", "(b) without")):
            runs = results[(load, name)]
            throughput = statistics.median(r.throughput for r, _ in runs)
            rows.append(
                [
                    load,
                    label,
                    statistics.median(r.p50 * 1000 for r, _ in runs),
                    statistics.median(r.p99 * 1000 for r, _ in runs),
                    throughput,
                    f"{throughput / floor:.2f}x",
                    statistics.median(cpu for _, cpu in runs),
                ]
            )
    print()
    print(
        table(
            ["load", "server", "p50 ms", "p99 ms", "req/s", "req/s vs (b)", "server CPU ms/req"],
            rows,
        )
    )


@contextlib.contextmanager
def _serve(folder: Path) -> Iterator[ServerProcess]:
    """`python -m app serve`, as the README runs it."""
    folder.mkdir(parents=True)
    server = ServerProcess(
        {"DATA_DIR": str(folder / "data"), "LOG_LEVEL": "WARNING"}, folder / "server.log"
    ).start()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    main()
