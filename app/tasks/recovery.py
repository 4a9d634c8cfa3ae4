"""Recovery: finish work that was cut off, in every process and from cron.

A pass asks each must-complete kind for its due rows (pending or retrying past
their time plus a grace period, so a request's own BackgroundTask is not raced;
or running with an expired lease, because the process that claimed it died)
and runs them through the same runner. The atomic claim makes any number of
processes running passes at once safe: each row is done by one of them.
"""

import asyncio
import contextlib
import logging
import random
from collections import Counter
from datetime import timedelta

from app.core import metrics
from app.core.db import describe, is_database_unavailable, single_statement
from app.core.shutdown import Shutdown
from app.models.base import utcnow
from app.repositories import tasks as tasks_repo
from app.tasks.registry import MUST_COMPLETE
from app.tasks.runner import TaskKind, run_tasks
from app.tasks.runtime import Runtime
from app.tasks.wake import Wakeup

logger = logging.getLogger(__name__)

Report = dict[str, Counter[str]]


async def recover_once(runtime: Runtime, kinds: dict[str, TaskKind] | None = None) -> Report:
    """One pass over every kind; returns, per kind, how many rows were found and how they ended."""
    kinds = kinds if kinds is not None else MUST_COMPLETE
    results = await asyncio.gather(*(_recover_kind(runtime, kind) for kind in kinds.values()))
    return dict(zip(kinds, results, strict=True))


async def _recover_kind(
    runtime: Runtime, kind: TaskKind, *, grace: float | None = None
) -> Counter[str]:
    """One pass over `kind`; `grace` (by default RECOVERY_GRACE_SECONDS) leaves rows that
    young alone, for the request's own BackgroundTask."""
    metrics.RECOVERY_PASSES.labels(kind.name).inc()
    settings = runtime.settings
    grace = settings.recovery_grace_seconds if grace is None else grace
    now = utcnow()
    report: Counter[str] = Counter()
    async with single_statement(runtime.engine) as connection:
        report["abandoned"] = await tasks_repo.abandon_exhausted(
            connection, kind.state, now=now, max_attempts=settings.task_max_attempts
        )
    async with single_statement(runtime.engine) as connection:
        row_ids = await tasks_repo.due_ids(
            connection,
            kind.state,
            now=now,
            due_before=now - timedelta(seconds=grace),
            limit=settings.recovery_batch_size,
        )
    report["due"] = len(row_ids)
    for status in await run_tasks(kind, row_ids):  # one attempt each: retries are due later
        report[str(status) if status is not None else "skipped"] += 1
    if row_ids or report["abandoned"]:
        logger.info(
            "recovery pass",
            extra={"fields": {"kind": kind.name, **{k: v for k, v in report.items() if v}}},
        )
    return report


async def run_recovery_loop(
    runtime: Runtime,
    shutdown: Shutdown,
    kinds: dict[str, TaskKind] | None = None,
    *,
    wakeup: Wakeup | None = None,
) -> None:
    """A loop per kind, so a kind whose work takes minutes (a CSV import) never holds up
    another's (the welcome emails of the users it imports). A `wakeup` (a worker's, see
    app.tasks.wake) starts a pass at once, without the grace."""
    kinds = kinds if kinds is not None else MUST_COMPLETE
    wakeup = wakeup or Wakeup()
    await asyncio.gather(
        *(_recover_kind_forever(runtime, shutdown, k, wakeup) for k in kinds.values())
    )


async def _recover_kind_forever(
    runtime: Runtime, shutdown: Shutdown, kind: TaskKind, wakeup: Wakeup
) -> None:
    """Pass after pass until shutdown; a full batch goes straight on to the next pass."""
    settings = runtime.settings
    with wakeup.subscribe() as woken:
        while not shutdown.requested.is_set():
            grace = 0.0 if woken.is_set() else None
            woken.clear()
            if await _pass(runtime, kind, grace=grace):
                continue
            # A little jitter keeps the passes of many processes from falling into step.
            interval = settings.recovery_interval_seconds * random.uniform(0.8, 1.2)  # noqa: S311
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_either(shutdown.requested, woken), interval)


async def _either(first: asyncio.Event, second: asyncio.Event) -> None:
    waits = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _pass(runtime: Runtime, kind: TaskKind, *, grace: float | None) -> bool:
    """One pass of the loop, its errors logged; whether it found a full batch."""
    try:
        report = await _recover_kind(runtime, kind, grace=grace)
    except Exception as exc:
        metrics.RECOVERY_ERRORS.labels(kind.name).inc()
        if is_database_unavailable(exc):
            # An outage: say so briefly, and try again next interval.
            logger.warning("recovery pass failed: %s", describe(exc))
        else:
            logger.exception("recovery pass failed")
        return False
    return report["due"] >= runtime.settings.recovery_batch_size
