"""`python -m app serve | migrate | recover`: the service's command line."""

import argparse
import asyncio
import functools
import logging
import os
import sys
import tempfile
from typing import cast

import uvicorn

from app.core import migrations
from app.core.config import Settings
from app.core.connection_limits import GuardedHttpToolsProtocol, HeadLimits
from app.core.logging import configure_logging

logger = logging.getLogger("app")


def serve(settings: Settings, args: argparse.Namespace) -> int:
    if settings.is_sqlite:
        # The embedded default has no separate migrate step: apply it here, once,
        # before any worker starts.
        migrations.upgrade(settings.resolved_database_url)
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Workers count into files here; a scrape of any one of them sums them all.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="signup-metrics-")
    head_limits = HeadLimits(
        max_bytes=settings.http_header_max_bytes,
        max_count=settings.http_header_max_count,
        timeout=settings.http_header_timeout_seconds,
    )
    # uvicorn takes a protocol class; a partial of one builds the same protocols
    # (and, unlike a class made here, pickles by reference for --workers).
    protocol = functools.partial(GuardedHttpToolsProtocol, limits=head_limits)
    uvicorn.run(
        "app.main:create_server_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        http=cast("type[asyncio.Protocol]", protocol),
        timeout_keep_alive=settings.http_keepalive_timeout_seconds,
        proxy_headers=True,
        # uvicorn waits for in-flight requests forever by default; then a deploy
        # hangs until the orchestrator kills us. Work cut off here is recovered.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )
    return 0


def migrate(settings: Settings, _args: argparse.Namespace) -> int:
    if not settings.is_sqlite and not asyncio.run(_database_reachable(settings)):
        return 1
    migrations.upgrade(settings.resolved_database_url)
    logger.info("database migrated to %s", migrations.head_revision())
    return 0


async def _database_reachable(settings: Settings) -> bool:
    """Wait for the database as a first start needs (see DATABASE_STARTUP_WAIT_SECONDS)."""
    from app.core.db import create_engine, wait_for_database  # noqa: PLC0415

    engine = create_engine(settings, pool_size=1)
    try:
        return await wait_for_database(engine, within=settings.database_startup_wait_seconds)
    finally:
        await engine.dispose()


def recover(settings: Settings, _args: argparse.Namespace) -> int:
    """One recovery pass, for cron: prints what it found and how each row ended."""
    from app.core.db import Database  # noqa: PLC0415 - keep `serve` imports lean
    from app.tasks.recovery import recover_once  # noqa: PLC0415
    from app.tasks.runtime import open_runtime  # noqa: PLC0415

    async def run() -> dict[str, dict[str, int]]:
        database = Database.open(settings)
        try:
            async with open_runtime(settings, database) as runtime:
                report = await recover_once(runtime)
        finally:
            await database.close()
        return {kind: dict(counts) for kind, counts in report.items()}

    report = asyncio.run(run())
    columns = ("due", "succeeded", "retrying", "failed", "skipped", "abandoned")
    print(f"{'kind':<20}" + "".join(f"{column:>11}" for column in columns))
    for kind, counts in report.items():
        row = "".join(f"{counts.get(column, 0):>11}" for column in columns)
        print(f"{kind:<20}{row}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the HTTP server")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--workers", type=int, default=1)
    serve_parser.set_defaults(handler=serve)
    migrate_parser = commands.add_parser("migrate", help="apply database migrations")
    migrate_parser.set_defaults(handler=migrate)
    recover_parser = commands.add_parser(
        "recover", help="run one recovery pass over due and abandoned work, then exit"
    )
    recover_parser.set_defaults(handler=recover)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    result: int = args.handler(settings, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
