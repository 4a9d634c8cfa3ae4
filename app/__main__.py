"""`python -m app serve | migrate`: the service's command line."""

import argparse
import logging
import sys

import uvicorn

from app.core import migrations
from app.core.config import Settings
from app.core.logging import configure_logging

logger = logging.getLogger("app")


def serve(settings: Settings, args: argparse.Namespace) -> None:
    if settings.is_sqlite:
        # The embedded default has no separate migrate step: apply it here, once,
        # before any worker starts.
        migrations.upgrade(settings.resolved_database_url)
    uvicorn.run(
        "app.main:create_server_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        proxy_headers=True,
    )


def migrate(settings: Settings, _args: argparse.Namespace) -> None:
    migrations.upgrade(settings.resolved_database_url)
    logger.info("database migrated to %s", migrations.head_revision())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the HTTP server")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--workers", type=int, default=1)
    serve_parser.set_defaults(handler=serve)
    migrate_parser = commands.add_parser("migrate", help="apply database migrations")
    migrate_parser.set_defaults(handler=migrate)
    args = parser.parse_args(argv)

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    args.handler(settings, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
