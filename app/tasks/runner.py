"""The background-task contract, implemented once: claim, act under a timeout, settle, retry.

Every must-complete task is a TaskKind: where its state lives (TaskState) and
what it does (`perform`). `run_task` is what BackgroundTasks and recovery call.

1. Claim with one conditional UPDATE ... RETURNING: due and not running, or
   running with an expired lease. No row back means someone else has it or
   finished it, and we stop. Two runs, workers or replicas never both act.
2. Perform under a timeout shorter than the lease.
3. Settle, fenced by the lease we wrote, so a run whose lease expired cannot
   overwrite the run that took over: `succeeded`; `retrying` after exponential
   backoff with full jitter for transient errors; `failed` for permanent errors
   or when attempts run out, keeping the last error.
4. Retry short transient failures right here, within a few seconds of backoff;
   beyond that the row stays `retrying` with its due time, for recovery.
5. Bound concurrency per kind, taking the slot before the claim, so waiting
   for a slot never eats into the lease.
6. Never raise: Starlette skips the remaining background tasks of a request
   after an exception. Everything is caught, recorded and logged.
7. Cut off by shutdown, hand the row back (`retrying`, due now) so the next
   process does not wait for the lease to expire.
"""

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError

from app.core import metrics
from app.core.config import Settings
from app.core.db import single_statement
from app.core.logging import log_context
from app.integrations.errors import DeliveryError
from app.models.base import TaskStatus, utcnow
from app.models.task_state import TaskState
from app.repositories import tasks as tasks_repo
from app.tasks.runtime import Runtime, current

logger = logging.getLogger(__name__)

# Long enough for any error message worth reading; short enough for a status page.
_ERROR_LIMIT = 1000
# How long a settle keeps retrying while the database is unreachable, at most:
# the work is done, and giving up means recovery does it again.
_SETTLE_PATIENCE = 0.8  # of the lease


@dataclass(frozen=True)
class Claim:
    """One attempt we own: the row's id, the attempt number, and the columns asked for."""

    row_id: uuid.UUID
    attempt: int
    lease_until: datetime
    row: RowMapping


@dataclass(frozen=True, eq=False)
class TaskKind:
    """A kind of must-complete work: its name, its state columns and its business logic."""

    name: str
    state: TaskState
    perform: Callable[[Runtime, Claim], Awaitable[None]]
    concurrency: Callable[[Settings], int]
    returning: tasks_repo.Returning = ()


@dataclass(frozen=True)
class _Outcome:
    status: TaskStatus
    error: str | None = None
    retry_in: float | None = None


async def run_task(kind: TaskKind, row_id: uuid.UUID) -> TaskStatus | None:
    """Take one piece of work as far as it can go now; return where it ended.

    None means this run did not act: another run had the row, it was not due,
    or the database could not be reached. Never raises an Exception.
    """
    with log_context(task=kind.name, row_id=str(row_id)):
        try:
            runtime = current()
            limiter = runtime.limiter(kind.name, kind.concurrency(runtime.settings))
            if limiter.full:
                logger.info("backlog full; the row waits in the database for recovery")
                return None
            budget = runtime.settings.task_inline_retry_seconds
            while True:
                async with limiter.slot():
                    claim = await _claim(runtime, kind, row_id)
                    if claim is None:
                        return None
                    outcome = await _attempt(runtime, kind, claim)
                if outcome.retry_in is None or outcome.retry_in > budget:
                    return outcome.status
                budget -= outcome.retry_in
                await asyncio.sleep(outcome.retry_in)
        except Exception:
            # Claim or settle failed (database unreachable?). The row keeps its
            # durable state, and recovery picks it up when it is due again.
            logger.exception("task stopped before settling; recovery will resume it")
            return None


async def run_tasks(kind: TaskKind, row_ids: list[uuid.UUID]) -> list[TaskStatus | None]:
    """Run many rows of one kind, as recovery does: one attempt each, no inline retries.

    Whenever slots are free it claims that many rows in one statement, so a
    backlog is drained without a claim round trip per row. Rows another
    process won are skipped (None). Never raises an Exception.
    """
    runtime = current()
    limiter = runtime.limiter(kind.name, kind.concurrency(runtime.settings))
    statuses: dict[uuid.UUID, TaskStatus | None] = dict.fromkeys(row_ids)
    waiting = list(reversed(row_ids))
    running: set[asyncio.Task[None]] = set()

    async def attempt(claim: Claim) -> None:
        try:
            with log_context(task=kind.name, row_id=str(claim.row_id)):
                statuses[claim.row_id] = (await _attempt(runtime, kind, claim)).status
        except Exception:
            logger.exception("task stopped before settling; recovery will resume it")
        finally:
            limiter.release()

    try:
        while waiting:
            await limiter.acquire()
            slots = 1
            while slots < len(waiting) and await limiter.try_acquire():
                slots += 1
            chunk = [waiting.pop() for _ in range(slots)]
            try:
                claims = await _claim_many(runtime, kind, chunk)
            except Exception:
                logger.exception("claiming %d %s rows failed; they stay due", slots, kind.name)
                claims = []
            for _ in range(slots - len(claims)):
                limiter.release()
            for claim in claims:
                task = asyncio.create_task(attempt(claim))
                running.add(task)
                task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
    return [statuses[row_id] for row_id in row_ids]


async def _claim_many(runtime: Runtime, kind: TaskKind, row_ids: list[uuid.UUID]) -> list[Claim]:
    now = utcnow()
    lease_until = now + timedelta(seconds=runtime.settings.task_lease_seconds)
    async with single_statement(runtime.engine) as connection:
        rows = await tasks_repo.claim_many(
            connection,
            kind.state,
            row_ids,
            now=now,
            lease_until=lease_until,
            returning=kind.returning,
        )
    metrics.TASKS_STARTED.labels(kind.name).inc(len(rows))
    return [
        Claim(
            row_id=row[kind.state.id.key],
            attempt=row[kind.state.attempts.key],
            lease_until=lease_until,
            row=row,
        )
        for row in rows
    ]


async def _claim(runtime: Runtime, kind: TaskKind, row_id: uuid.UUID) -> Claim | None:
    now = utcnow()
    lease_until = now + timedelta(seconds=runtime.settings.task_lease_seconds)
    async with single_statement(runtime.engine) as connection:
        row = await tasks_repo.claim(
            connection,
            kind.state,
            row_id,
            now=now,
            lease_until=lease_until,
            returning=kind.returning,
        )
    if row is None:
        return None
    metrics.TASKS_STARTED.labels(kind.name).inc()
    attempt = row[kind.state.attempts.key]
    return Claim(row_id=row_id, attempt=attempt, lease_until=lease_until, row=row)


async def _attempt(runtime: Runtime, kind: TaskKind, claim: Claim) -> _Outcome:
    """Perform and settle one claimed attempt."""
    settings = runtime.settings
    started = time.perf_counter()
    with log_context(attempt=claim.attempt):
        try:
            async with asyncio.timeout(settings.task_timeout_seconds):
                await kind.perform(runtime, claim)
        except DeliveryError as exc:
            outcome = _after_failure(settings, claim, str(exc), exc.transient, exc.retry_after)
        except TimeoutError:
            error = f"timed out after {settings.task_timeout_seconds:g}s"
            outcome = _after_failure(settings, claim, error, transient=True)
        except asyncio.CancelledError:
            # Shutdown ran out of grace. Hand the row back, due at once, rather
            # than leave it to wait out its lease; then let the cancellation go on.
            interrupted = _Outcome(TaskStatus.RETRYING, "interrupted by shutdown", retry_in=0)
            await asyncio.shield(_settle(runtime, kind, claim, interrupted))
            raise
        except Exception as exc:
            logger.exception("task failed unexpectedly")
            error = f"unexpected error: {type(exc).__name__}: {exc}"
            outcome = _after_failure(settings, claim, error, transient=True)
        else:
            outcome = _Outcome(TaskStatus.SUCCEEDED)
        metrics.TASK_DURATION.labels(kind.name).observe(time.perf_counter() - started)
        await _settle(runtime, kind, claim, outcome)
        return outcome


def _after_failure(
    settings: Settings,
    claim: Claim,
    error: str,
    transient: bool,
    retry_after: float | None = None,
) -> _Outcome:
    if not transient or claim.attempt >= settings.task_max_attempts:
        return _Outcome(TaskStatus.FAILED, error)
    delay = backoff_delay(
        claim.attempt, settings.task_backoff_base_seconds, settings.task_backoff_max_seconds
    )
    if retry_after is not None:
        # The receiver asked for a pause (Retry-After): honour it, within our cap.
        delay = max(delay, min(retry_after, settings.task_backoff_max_seconds))
    return _Outcome(TaskStatus.RETRYING, error, retry_in=delay)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: spreads the retries of many failed rows."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311 - not crypto


async def _settle(runtime: Runtime, kind: TaskKind, claim: Claim, outcome: _Outcome) -> None:
    """Record the outcome, retrying while the database is briefly unreachable.

    The side effect has happened (or definitely failed); losing its record
    means recovery repeats it after the lease, so it is worth some patience.
    """
    patience = runtime.settings.task_lease_seconds * _SETTLE_PATIENCE
    deadline = time.monotonic() + patience
    pause = 0.1
    while True:
        try:
            settled = await _write_settle(runtime, kind, claim, outcome)
            break
        except (DBAPIError, OSError) as exc:
            if time.monotonic() + pause > deadline:
                raise
            logger.warning("settle failed (%s); retrying in %.1fs", type(exc).__name__, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
    if not settled:
        logger.warning("lease lost before settling; another run owns this row now")
        return
    _count(kind, outcome.status)
    log = logger.info if outcome.status is TaskStatus.SUCCEEDED else logger.warning
    log(
        "task %s",
        outcome.status,
        extra={"fields": {"error": outcome.error} if outcome.error else {}},
    )


async def _write_settle(runtime: Runtime, kind: TaskKind, claim: Claim, outcome: _Outcome) -> bool:
    now = utcnow()
    next_attempt_at = (
        now + timedelta(seconds=outcome.retry_in) if outcome.retry_in is not None else None
    )
    async with single_statement(runtime.engine) as connection:
        return await tasks_repo.settle(
            connection,
            kind.state,
            claim.row_id,
            lease_until=claim.lease_until,
            status=outcome.status,
            now=now,
            last_error=outcome.error[:_ERROR_LIMIT] if outcome.error else None,
            next_attempt_at=next_attempt_at,
        )


def _count(kind: TaskKind, status: TaskStatus) -> None:
    counter = {
        TaskStatus.SUCCEEDED: metrics.TASKS_SUCCEEDED,
        TaskStatus.RETRYING: metrics.TASKS_RETRIED,
        TaskStatus.FAILED: metrics.TASKS_FAILED,
    }[status]
    counter.labels(kind.name).inc()
