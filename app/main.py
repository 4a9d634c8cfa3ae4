"""The application factory and its lifespan."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.core.config import Settings
from app.core.db import Database
from app.core.errors import install_error_handlers
from app.core.logging import configure_logging
from app.core.middleware import RequestIdMiddleware
from app.integrations.mail_capture import MailCapture
from app.integrations.mailer import Mailer
from app.routers import health, signups, users
from app.tasks import runtime

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Signups, with welcome emails sent by FastAPI's plain `BackgroundTasks`, made
durable: the owed work is committed with the row, claimed atomically, retried
with backoff, and recovered after a crash. Every error is RFC 9457 problem
details (`application/problem+json`).
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    database = Database.open(settings)
    capture: MailCapture | None = None
    if settings.smtp_host:
        mailer = Mailer.from_settings(settings, host=settings.smtp_host, port=settings.smtp_port)
    else:
        capture = MailCapture(settings.mail_dir)
        await capture.start()
        mailer = Mailer.from_settings(settings, host=capture.host, port=capture.port)
    app.state.database = database
    runtime.install(
        runtime.Runtime(
            settings=settings,
            engine=database.task_engine,
            sessions=database.task_sessions,
            mailer=mailer,
        )
    )
    try:
        yield
    finally:
        runtime.install(None)
        await mailer.close()
        if capture is not None:
            await capture.stop()
        await database.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="Signup Service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings or Settings()
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(signups.router)
    app.include_router(users.router)
    app.include_router(health.router)
    return app


def create_server_app() -> FastAPI:
    """What uvicorn imports in each worker process: logging first, then the app."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
