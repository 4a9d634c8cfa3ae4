"""`python -m app serve | worker | migrate | recover | prune | api-keys`: the command line."""

import argparse
import asyncio
import functools
import logging
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar, cast

import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import migrations
from app.core.config import Settings
from app.core.connection_limits import GuardedHttpToolsProtocol, HeadLimits
from app.core.errors import ServiceError
from app.core.logging import configure_logging
from app.services import api_keys

logger = logging.getLogger("app")
T = TypeVar("T")


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
        # The app believes X-Forwarded-For from TRUSTED_PROXIES only (see create_app);
        # uvicorn's own handling would trust any local peer.
        proxy_headers=False,
        # uvicorn waits for in-flight requests forever by default; then a deploy
        # hangs until the orchestrator kills us. Work cut off here is recovered.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )
    return 0


def worker(settings: Settings, _args: argparse.Namespace) -> int:
    """The background work alone: recovery loops, CSV imports and pruning; no HTTP server."""
    from app.tasks.background import run_worker  # noqa: PLC0415 - keep `serve` imports lean

    if settings.is_sqlite:
        migrations.upgrade(settings.resolved_database_url)
    asyncio.run(run_worker(settings))
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


def prune(settings: Settings, _args: argparse.Namespace) -> int:
    """Delete what is past its retention now, in batches; prints what it deleted."""
    from app.core.db import create_engine  # noqa: PLC0415 - keep `serve` imports lean
    from app.models.base import utcnow  # noqa: PLC0415
    from app.services.retention import prune as prune_now  # noqa: PLC0415

    if settings.is_sqlite:
        migrations.upgrade(settings.resolved_database_url)

    async def run() -> dict[str, int]:
        engine = create_engine(settings, pool_size=1)
        try:
            return await prune_now(engine, settings, now=utcnow())
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    print(f"{'deleted':<26}{'rows':>10}")
    for what, deleted in report.items():
        print(f"{what:<26}{deleted:>10}")
    return 0


def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in a session on the configured database (the embedded one migrated first,
    as `serve` does, so keys can be made before the first start)."""
    from app.core.db import Database  # noqa: PLC0415 - keep `serve` imports lean

    if settings.is_sqlite:
        migrations.upgrade(settings.resolved_database_url)

    async def run() -> T:
        database = Database.open(settings)
        try:
            async with database.request_sessions() as session:
                return await work(session)
        finally:
            await database.close()

    return asyncio.run(run())


def create_api_key(settings: Settings, args: argparse.Namespace) -> int:
    """Issue a key. The key goes to stdout, alone; what it is goes to stderr, so
    `KEY=$(python -m app api-keys create ...)` captures just the key."""
    try:
        issued = _with_session(
            settings,
            lambda session: api_keys.create(
                session, name=args.name, scopes=[api_keys.Scope(s) for s in args.scopes]
            ),
        )
    except ServiceError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    print(
        f"created API key {issued.name!r} ({issued.prefix}...) with scopes "
        f"{' '.join(issued.scopes)}; it is shown once, below:",
        file=sys.stderr,
    )
    print(issued.key)
    return 0


def list_api_keys(settings: Settings, _args: argparse.Namespace) -> int:
    keys = _with_session(settings, api_keys.list_all)

    def moment(value: datetime | None) -> str:
        return value.isoformat(timespec="seconds") if value is not None else "-"

    columns = ("name", "prefix", "scopes", "created", "last used", "revoked")
    rows = [
        (
            key.name,
            key.prefix,
            ",".join(key.scopes),
            moment(key.created_at),
            moment(key.last_used_at),
            moment(key.revoked_at),
        )
        for key in keys
    ]
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]
    for row in [columns, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def revoke_api_key(settings: Settings, args: argparse.Namespace) -> int:
    try:
        key, now = _with_session(settings, lambda session: api_keys.revoke(session, name=args.name))
    except ServiceError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    when = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-"
    print(f"{'revoked' if now else 'already revoked'}: {key.name} ({key.prefix}...) at {when}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the HTTP server")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--workers", type=int, default=1)
    serve_parser.set_defaults(handler=serve)
    worker_parser = commands.add_parser(
        "worker", help="run the background work alone (recovery, CSV imports, pruning), no HTTP"
    )
    worker_parser.set_defaults(handler=worker)
    migrate_parser = commands.add_parser("migrate", help="apply database migrations")
    migrate_parser.set_defaults(handler=migrate)
    recover_parser = commands.add_parser(
        "recover", help="run one recovery pass over due and abandoned work, then exit"
    )
    recover_parser.set_defaults(handler=recover)
    prune_parser = commands.add_parser(
        "prune", help="delete what is past its retention, in batches; print what went"
    )
    prune_parser.set_defaults(handler=prune)

    keys_parser = commands.add_parser(
        "api-keys", help="issue, list and revoke API keys (works against a running service)"
    )
    keys = keys_parser.add_subparsers(dest="api_keys_command", required=True)
    create_parser = keys.add_parser("create", help="issue a key; prints it once, on stdout")
    create_parser.add_argument("--name", required=True, help="who holds it; the audit actor")
    create_parser.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        required=True,
        choices=api_keys.ALL_SCOPES,
        help="a scope the key holds; repeat for more",
    )
    create_parser.set_defaults(handler=create_api_key)
    list_parser = keys.add_parser("list", help="every key: name, prefix, scopes, dates")
    list_parser.set_defaults(handler=list_api_keys)
    revoke_parser = keys.add_parser("revoke", help="revoke a key; every process stops it in 1 s")
    revoke_parser.add_argument("name")
    revoke_parser.set_defaults(handler=revoke_api_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    result: int = args.handler(settings, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
