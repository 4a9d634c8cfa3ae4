"""The loops a process runs beside (or, in a worker, instead of) answering HTTP.

- Recovery, a loop per task kind (app.tasks.recovery), woken at once by a
  NOTIFY from a pure web process on PostgreSQL (app.tasks.wake).
- Pruning: what is past its retention, every PRUNE_INTERVAL_SECONDS
  (app.services.retention).

`serve` runs them unless SERVE_BACKGROUND_WORK=false; `worker` runs only them.
Both stop them the same way on SIGTERM (`stop_within_grace`).
"""

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Coroutine
from typing import Any

import prometheus_client

from app.core.config import Settings
from app.core.db import Database, describe, is_database_unavailable, wait_for_database
from app.core.shutdown import Shutdown
from app.models.base import utcnow
from app.services import retention
from app.tasks import wake
from app.tasks.recovery import run_recovery_loop
from app.tasks.runtime import Runtime, open_runtime

logger = logging.getLogger(__name__)


async def run_background_loops(runtime: Runtime, shutdown: Shutdown) -> None:
    """Every loop this process's settings ask for, until shutdown."""
    settings = runtime.settings
    wakeup = wake.Wakeup()
    loops: list[Coroutine[Any, Any, None]] = []
    if settings.recovery_interval_seconds > 0:
        loops.append(run_recovery_loop(runtime, shutdown, wakeup=wakeup))
        loops.append(wake.listen(settings, wakeup, shutdown))
    if settings.prune_interval_seconds > 0:
        loops.append(run_prune_loop(runtime, shutdown))
    await asyncio.gather(*loops)


async def run_worker(settings: Settings) -> None:
    """`python -m app worker`: the loops and the CSV imports, no HTTP, until SIGTERM or SIGINT;
    then the same grace and hand-back as `serve`."""
    shutdown = Shutdown(settings.shutdown_grace_seconds)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown.begin)
    if settings.worker_metrics_port:
        # The task counters this process keeps; the due backlog is the web's /metrics.
        prometheus_client.start_http_server(
            settings.worker_metrics_port, addr=settings.worker_metrics_host
        )
    database = Database.open(settings)
    try:
        if not settings.is_sqlite and not await wait_for_database(
            database.task_engine,
            within=settings.database_startup_wait_seconds,
            stop=shutdown.requested,
        ):
            logger.warning("starting without the database")
        async with open_runtime(settings, database) as runtime:
            loops = asyncio.create_task(run_background_loops(runtime, shutdown))
            logger.info("worker started")
            stopping = asyncio.create_task(shutdown.requested.wait())
            await asyncio.wait([loops, stopping], return_when=asyncio.FIRST_COMPLETED)
            shutdown.begin()
            await stop_within_grace(loops, shutdown)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await database.close()
    logger.info("worker stopped")


async def run_prune_loop(runtime: Runtime, shutdown: Shutdown) -> None:
    """Prune, then wait PRUNE_INTERVAL_SECONDS (with jitter), until shutdown."""
    settings = runtime.settings
    while not shutdown.requested.is_set():
        try:
            report = await retention.prune(
                runtime.engine, settings, now=utcnow(), stop=shutdown.requested
            )
        except Exception as exc:
            if is_database_unavailable(exc):
                logger.warning("pruning failed: %s", describe(exc))
            else:
                logger.exception("pruning failed")
        else:
            if any(report.values()):
                logger.info("pruned", extra={"fields": {k: v for k, v in report.items() if v}})
        interval = settings.prune_interval_seconds * random.uniform(0.8, 1.2)  # noqa: S311
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shutdown.requested.wait(), interval)


async def stop_within_grace(loops: "asyncio.Task[None]", shutdown: Shutdown) -> None:
    """Let work the loops started finish within what is left of the grace, then cancel it.

    Cancelled runs hand their rows back (see the runner), so the next process
    picks them up at once.
    """
    try:
        await asyncio.wait_for(asyncio.shield(loops), shutdown.remaining())
    except TimeoutError:
        logger.warning("shutdown grace over: interrupting recovered work in flight")
        loops.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loops
