"""The application factory and its lifespan."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.core.config import Settings
from app.core.db import Database, wait_for_database
from app.core.errors import install_error_handlers
from app.core.logging import configure_logging
from app.core.middleware import RequestIdMiddleware, ShutdownCutoffMiddleware
from app.core.openapi import refine_openapi
from app.core.rate_limits import RequestLimiter
from app.core.request_limits import BodyLimits, RequestLimitsMiddleware
from app.core.security_headers import SecurityHeadersMiddleware
from app.core.shutdown import Shutdown
from app.routers import (
    admin,
    console,
    docs,
    health,
    idempotency,
    notifications,
    signups,
    uploads,
    users,
)
from app.services import api_keys
from app.services.idempotency import Replayed
from app.tasks.background import run_background_loops, stop_within_grace
from app.tasks.runtime import open_runtime
from app.tasks.wake import Notifier

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Signups, CSV bulk imports and notifications (email, or webhooks signed per
Standard Webhooks), with everything a request triggers but need not wait for
run by FastAPI's plain `BackgroundTasks`, made durable: the owed work is
committed with the row, claimed atomically, retried with backoff, and
recovered after a crash. Every error is RFC 9457 problem details
(`application/problem+json`).
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    database = Database.open(settings)
    app.state.database = database
    app.state.key_resolver = api_keys.KeyResolver(database.request_sessions)
    app.state.limiter = RequestLimiter(settings.rate_limit_storage_uri)
    # A pure web process does no owed work itself: it wakes the workers.
    app.state.notifier = (
        None if settings.serve_background_work else Notifier(database.request_engine)
    )
    shutdown: Shutdown = app.state.shutdown
    if app.state.watch_signals:
        shutdown.watch_signals()
    try:
        if not settings.is_sqlite and not await wait_for_database(
            database.request_engine,
            within=settings.database_startup_wait_seconds,
            stop=shutdown.requested,
        ):
            # Serve anyway: /readyz and every request answer 503 until the
            # database is back, and the recovery loops keep trying.
            logger.warning("starting without the database")
        elif settings.bootstrap_api_key is not None:
            await api_keys.ensure_bootstrap(
                database.request_sessions, key=settings.bootstrap_api_key
            )
        async with open_runtime(settings, database) as runtime:
            loops = (
                asyncio.create_task(run_background_loops(runtime, shutdown))
                if settings.serve_background_work
                else None
            )
            try:
                yield
            finally:
                shutdown.begin()
                if loops is not None:
                    await stop_within_grace(loops, shutdown)
                # Rows queued by requests for a slot get what is left of the grace.
                await runtime.limiters.stop(patience=shutdown.remaining())
    finally:
        shutdown.restore_signals()
        await database.close()


def create_app(settings: Settings | None = None, *, watch_signals: bool = False) -> FastAPI:
    app = FastAPI(
        title="Signup Service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served by app.routers.docs instead, with no CDN involved.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings = settings or Settings()
    app.state.watch_signals = watch_signals
    app.state.shutdown = shutdown = Shutdown(settings.shutdown_grace_seconds)
    install_error_handlers(app)
    app.add_exception_handler(Replayed, idempotency.replay)
    refine_openapi(app)
    limits = BodyLimits(
        max_bytes=settings.http_json_body_max_bytes,
        idle_timeout=settings.http_body_idle_timeout_seconds,
        min_bytes_per_second=settings.http_body_min_bytes_per_second,
    )
    app.add_middleware(RequestLimitsMiddleware, limits=limits)
    app.add_middleware(RequestIdMiddleware)
    if settings.trusted_proxies:
        # Only these peers' X-Forwarded-For is believed; from anyone else it is
        # ignored, so a client cannot pick the address it is limited and audited by.
        app.add_middleware(
            ProxyHeadersMiddleware,
            trusted_hosts=[str(network) for network in settings.trusted_proxies],
        )
    app.add_middleware(
        SecurityHeadersMiddleware, docs_paths=docs.PAGES, console_paths=console.PAGES
    )
    # Outermost: it sees the cancellation that ends a shutdown's grace.
    app.add_middleware(ShutdownCutoffMiddleware, shutdown=shutdown)
    app.include_router(signups.router)
    app.include_router(users.router)
    app.include_router(notifications.router)
    app.include_router(uploads.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(console.router)
    return app


def create_server_app() -> FastAPI:
    """What uvicorn imports in each worker process: logging first, then the app."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, watch_signals=True)
