"""Waking the workers when work is owed: PostgreSQL's LISTEN/NOTIFY, on top of the interval.

A pure web process (SERVE_BACKGROUND_WORK=false) runs no task itself: it
commits the owed work, then sends one NOTIFY on CHANNEL after the response.
Every worker LISTENs on a connection of its own, and each of its recovery
loops makes a pass at once, without the grace a request's own BackgroundTask
would need (there is none to race). The notification carries nothing: the
rows are the queue, and the atomic claim gives each to one worker.

A lost notification (a worker reconnecting, the database restarting) costs
only time: the loops still pass every RECOVERY_INTERVAL_SECONDS. SQLite has
no NOTIFY; there, the interval is all there is.
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import create_engine, describe, single_statement
from app.core.shutdown import Shutdown

logger = logging.getLogger(__name__)

CHANNEL = "signup_service_owed_work"
_NOTIFY = text("SELECT pg_notify(:channel, '')")
# Between attempts to listen again after the connection was lost: doubling, to a cap.
_RELISTEN_SECONDS = 1.0
_RELISTEN_MAX_SECONDS = 30.0


class Wakeup:
    """Notifications received, handed to every loop that waits on one."""

    def __init__(self) -> None:
        self._waiting: set[asyncio.Event] = set()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Event]:
        """An event set by every notification from now on (the loop clears it)."""
        event = asyncio.Event()
        self._waiting.add(event)
        try:
            yield event
        finally:
            self._waiting.discard(event)

    def notify(self) -> None:
        for event in self._waiting:
            event.set()


class Notifier:
    """Sends the NOTIFY for a web process, one at a time: requests that commit work while
    one is on its way share the next one, so a burst of signups costs a few, not one each."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sending = False
        self._again = False

    async def wake_workers(self) -> None:
        """A BackgroundTask: never raises (the work is committed; recovery finds it anyway)."""
        if self._engine.dialect.name != "postgresql":
            return
        if self._sending:
            self._again = True
            return
        self._sending = True
        try:
            while True:
                self._again = False
                async with single_statement(self._engine) as connection:
                    await connection.execute(_NOTIFY, {"channel": CHANNEL})
                if not self._again:
                    return
        except Exception as exc:
            logger.warning("could not wake the workers (they will pass anyway): %s", describe(exc))
        finally:
            self._sending = False


async def listen(settings: Settings, wakeup: Wakeup, shutdown: Shutdown) -> None:
    """LISTEN on CHANNEL until shutdown, on a connection of its own (outside the pools),
    listening again after it is lost; each notification wakes every subscribed loop."""
    if settings.is_sqlite:
        return
    engine = create_engine(settings, pool_size=1)
    pause = _RELISTEN_SECONDS
    try:
        while not shutdown.requested.is_set():
            try:
                listened = await _listen_once(engine, wakeup, shutdown)
            except Exception as exc:
                listened = False
                logger.warning("not listening for owed work (passes go on): %s", describe(exc))
            pause = _RELISTEN_SECONDS if listened else min(pause * 2, _RELISTEN_MAX_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(shutdown.requested.wait(), pause)
    finally:
        await engine.dispose()


async def _listen_once(engine: AsyncEngine, wakeup: Wakeup, shutdown: Shutdown) -> bool:
    """Listen until shutdown or until the connection is lost; whether it listened."""
    lost = asyncio.Event()

    def received(*_notification: object) -> None:
        wakeup.notify()

    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        if raw is None:
            return False
        raw.add_termination_listener(lambda _connection: lost.set())
        await raw.add_listener(CHANNEL, received)
        logger.info("listening for owed work")
        try:
            wakeup.notify()  # whatever was owed while nobody listened
            waits = [
                asyncio.create_task(shutdown.requested.wait()),
                asyncio.create_task(lost.wait()),
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        finally:
            if not lost.is_set():
                await raw.remove_listener(CHANNEL, received)
    return True
