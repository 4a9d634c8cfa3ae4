"""Engines and the two session factories: one pool for requests, one for background work."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings

logger = logging.getLogger(__name__)

SessionFactory = async_sessionmaker[AsyncSession]
# How long a connection waits for SQLite's write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000


def create_engine(settings: Settings, *, pool_size: int) -> AsyncEngine:
    """An engine for the configured database, tuned for its dialect."""
    url = settings.resolved_database_url
    # A statement's parameters (addresses, names, webhook secrets) never reach an
    # error message, and so never a log line or a task's last_error.
    if settings.is_sqlite:
        ensure_sqlite_directory(url)
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, hide_parameters=True)
        make_sqlite_safe_for_concurrency(engine)
        name_connection_failures(engine)
        return engine
    # max_overflow=0: overflow connections are closed on return, so a burst above
    # pool_size would open and close a connection per request. Waiting for a
    # pooled connection is cheaper than that churn.
    # No pool_pre_ping: with asyncpg it costs BEGIN, a query and ROLLBACK on every
    # checkout. After a database restart the first statement on a dead connection
    # fails instead, SQLAlchemy discards the whole pool, and that one request gets
    # a 503 (see app.core.errors); recycling bounds how stale a connection gets.
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=10,
        pool_recycle=1800,
        hide_parameters=True,
        connect_args={"server_settings": {"application_name": "signup-service"}},
    )
    name_connection_failures(engine)
    return engine


class DatabaseUnreachable(Exception):
    """The database could not be reached: a connection refused, cut, unresolved or timed out.

    asyncpg raises these as the plain OSErrors of its socket, which SQLAlchemy
    passes on as they are; they are renamed here, where they can only be the
    database's, so that an OSError from anywhere else (a full disk) is never
    taken for a database outage.
    """


# SQLSTATEs of a server that is gone, going or not there yet: connection exceptions
# (class 08), admin and crash shutdown, "the database system is starting up" or
# "shutting down" (57P01-57P03), too many connections (53300).
_UNREACHABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps: a driver's error inside SQLAlchemy's, and so on."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_connection_failure(exc: BaseException) -> bool:
    """Whether an error a database driver raised means its connection is lost or unusable.

    Besides the server's own SQLSTATEs, asyncpg reports a connection cut in
    the middle of an operation as a client-side error (or the socket's own
    OSError), and one left mid-way by it as "cannot switch to state N; another
    operation is in progress".
    """
    for error in _causes(exc):
        if isinstance(error, OSError | asyncpg.InterfaceError | asyncpg.InternalClientError):
            return True
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNREACHABLE_SQLSTATES):
            return True
    return False


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether work that met this error would likely succeed if retried shortly: the
    database is down, restarting, overloaded or locked, not the work at fault.

    The one classification of an outage: requests answer it with 503, startup
    waits through it, the runner's settle and the recovery loop retry through it.
    """
    if isinstance(exc, DatabaseUnreachable | PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        return (
            exc.connection_invalidated
            or isinstance(exc, OperationalError | InterfaceError)
            or _is_connection_failure(exc)
        )
    return False


def root_cause(exc: BaseException) -> BaseException:
    """The innermost error: the driver's, under SQLAlchemy's and ours."""
    root = exc
    # A time limit's TimeoutError is caused by the cancellation it made: stop there.
    while root.__cause__ is not None and not isinstance(root.__cause__, asyncio.CancelledError):
        root = root.__cause__
    return root


def describe(exc: BaseException) -> str:
    """The innermost error's type and first line: the driver's words, not the statement."""
    root = root_cause(exc)
    first_line = str(root).partition("\n")[0]
    return f"{type(root).__name__}: {first_line[:200]}".strip().rstrip(":")


def name_connection_failures(engine: AsyncEngine) -> None:
    """Every connection failure drops its connection from the pool, and is raised as a
    DBAPIError or as DatabaseUnreachable, never as a bare OSError.

    SQLAlchemy's asyncpg dialect only recognises a connection asyncpg has
    closed; one broken mid-operation went back to the pool, and the next
    request to draw it failed as well.
    """

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except OSError as exc:
            raise DatabaseUnreachable(describe(exc)) from exc

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> BaseException | None:
        original = context.original_exception
        if not _is_connection_failure(original):
            return None
        context.is_disconnect = True
        if context.sqlalchemy_exception is None:  # a bare driver error: name it
            return DatabaseUnreachable(describe(original))
        return None


@asynccontextmanager
async def single_statement(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for one statement that commits by itself.

    On PostgreSQL it is in autocommit mode: a single statement is atomic on its
    own, and skipping BEGIN and COMMIT saves two round trips, which matters for
    the claim and the settle every background task makes. On SQLite the block
    is one transaction (our BEGIN IMMEDIATE), which for one statement is the same.
    """
    async with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            yield await connection.execution_options(isolation_level="AUTOCOMMIT")
            return
        async with connection.begin():
            yield connection


def ensure_sqlite_directory(url: str) -> None:
    """SQLite creates the file but not its folder: create the folder (DATA_DIR) too."""
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def make_sqlite_safe_for_concurrency(engine: AsyncEngine) -> None:
    """WAL, a busy timeout and BEGIN IMMEDIATE, so concurrent writers wait instead of failing.

    pysqlite's deferred BEGIN takes the write lock only at the first write; two
    transactions that read then write can then deadlock and one fails with
    "database is locked" at once, whatever the busy timeout. Taking the write
    lock at BEGIN makes them queue instead.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        # First: switching the journal mode may itself have to wait for a lock.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    # expire_on_commit=False: after the service commits, the router still reads the
    # row to shape the response, and must not open a new transaction to do so.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@dataclass
class Database:
    """The request pool and the task pool, opened and closed together."""

    request_engine: AsyncEngine
    task_engine: AsyncEngine
    request_sessions: SessionFactory
    task_sessions: SessionFactory

    @classmethod
    def open(cls, settings: Settings) -> "Database":
        if settings.is_sqlite:
            # SQLite has one writer at a time, and every transaction here takes the
            # write lock (BEGIN IMMEDIATE). Connections waiting for it poll with
            # sleeps, so among many of them a busy one (an import's batches) can
            # starve the others past any busy timeout. One connection, shared by
            # requests and background work, makes them wait in the pool's queue
            # instead: first come, first served.
            engine = create_engine(settings, pool_size=1)
            sessions = create_session_factory(engine)
            return cls(
                request_engine=engine,
                task_engine=engine,
                request_sessions=sessions,
                task_sessions=sessions,
            )
        request_engine = create_engine(settings, pool_size=settings.database_pool_size)
        task_engine = create_engine(settings, pool_size=settings.task_database_pool_size)
        return cls(
            request_engine=request_engine,
            task_engine=task_engine,
            request_sessions=create_session_factory(request_engine),
            task_sessions=create_session_factory(task_engine),
        )

    async def close(self) -> None:
        await self.request_engine.dispose()
        if self.task_engine is not self.request_engine:
            await self.task_engine.dispose()


# A first connection may fail and work a moment later (nothing listens yet, the name
# does not resolve yet, the server is still starting, an attempt hangs): what
# `is_database_unavailable` recognises, or our own time limit on an attempt.
# Anything else (a wrong password, a missing database) will not mend by waiting.
_ATTEMPT_SECONDS = 5.0
_RETRY_DELAY_MAX_SECONDS = 2.0


async def wait_for_database(
    engine: AsyncEngine, *, within: float, stop: asyncio.Event | None = None
) -> bool:
    """Connect until it works, for at most `within` seconds; whether it did.

    Backs off from a quarter second to two. Logs once when it starts waiting,
    and once more when the database answers or the time is up. Returns early,
    False, when `stop` is set (a shutdown during startup).
    """
    deadline = time.monotonic() + within
    delay = 0.25
    waited_since: float | None = None
    while True:
        attempt_within = max(0.1, min(_ATTEMPT_SECONDS, deadline - time.monotonic()))
        try:
            async with asyncio.timeout(attempt_within), engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            if not (isinstance(exc, TimeoutError) or is_database_unavailable(exc)):
                raise
            reason = describe(exc)
            if waited_since is None:
                waited_since = time.monotonic()
                logger.warning(
                    "database not reachable yet (%s); trying again for up to %gs", reason, within
                )
            if stop is not None and stop.is_set():
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.error("database still not reachable after %gs (%s)", within, reason)
                return False
            pause = min(delay, remaining)
            delay = min(delay * 2, _RETRY_DELAY_MAX_SECONDS)
            if stop is None:
                await asyncio.sleep(pause)
            else:
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
            continue
        if waited_since is not None:
            logger.info("database reachable after %.1fs", time.monotonic() - waited_since)
        return True
