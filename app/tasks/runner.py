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
8. Work that may outlast one lease (a long import) has a time limit of its own
   and renews its lease while it runs, so a live run is never taken over and a
   dead one still is, once its last renewal runs out. Renewal moves the fencing
   token, so writes fenced by it hold the token steady (`Lease.held`).
"""

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
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


class PermanentTaskError(Exception):
    """The work cannot succeed as it stands (a malformed file, say): fail now, keep the reason."""


class LeaseLost(Exception):
    """Another run took the row over: stop at once, and settle nothing."""


class Lease:
    """A claim's fencing token: the `lease_until` it wrote, moved on by each renewal.

    A write that must only happen while we own the row (a settle, an import's
    batch) holds the token steady with `held()`, and puts it in its WHERE.
    """

    def __init__(self, until: datetime) -> None:
        self.until = until
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[datetime]:
        """The current token, not renewed until the block ends."""
        async with self._lock:
            yield self.until

    async def renew(self, extend: Callable[[datetime], Awaitable[datetime | None]]) -> bool:
        """Adopt the token `extend(current token)` wrote; False if it found the lease gone."""
        async with self._lock:
            renewed = await extend(self.until)
            if renewed is None:
                return False
            self.until = renewed
            return True


@dataclass(frozen=True)
class Claim:
    """One attempt we own: the row's id, the attempt number, and the columns asked for."""

    row_id: uuid.UUID
    attempt: int
    lease: Lease
    row: RowMapping


def default_timeout(settings: Settings) -> float:
    return settings.task_timeout_seconds


@dataclass(frozen=True, eq=False)
class TaskKind:
    """A kind of must-complete work: its name, its state columns and its business logic.

    `timeout` is one attempt's time limit. A kind whose attempts may outlast
    the lease (TASK_LEASE_SECONDS) must set `renews_lease`.
    """

    name: str
    state: TaskState
    perform: Callable[[Runtime, Claim], Awaitable[None]]
    concurrency: Callable[[Settings], int]
    returning: tasks_repo.Returning = ()
    timeout: Callable[[Settings], float] = default_timeout
    renews_lease: bool = False


@dataclass(frozen=True)
class _Outcome:
    status: TaskStatus
    error: str | None = None
    retry_in: float | None = None


async def run_task(kind: TaskKind, row_id: uuid.UUID) -> TaskStatus | None:
    """Take one piece of work as far as it can go now; return where it ended.

    None means this run's outcome does not count: another run had the row (or
    took it over, its lease having run out), it was not due, or the database
    could not be reached. Never raises an Exception.
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
                if outcome is None:
                    return None
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
                outcome = await _attempt(runtime, kind, claim)
                statuses[claim.row_id] = outcome.status if outcome is not None else None
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
        rows = await tasks_repo.claim(
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
            lease=Lease(lease_until),
            row=row,
        )
        for row in rows
    ]


async def _claim(runtime: Runtime, kind: TaskKind, row_id: uuid.UUID) -> Claim | None:
    claims = await _claim_many(runtime, kind, [row_id])
    return claims[0] if claims else None


async def _attempt(runtime: Runtime, kind: TaskKind, claim: Claim) -> _Outcome | None:
    """Perform and settle one claimed attempt; None if another run took the row over."""
    settings = runtime.settings
    timeout = kind.timeout(settings)
    started = time.perf_counter()
    with log_context(attempt=claim.attempt), runtime.in_flight.track():
        try:
            async with asyncio.timeout(timeout), _renewing(runtime, kind, claim):
                await kind.perform(runtime, claim)
        except LeaseLost:
            logger.warning("lease lost: another run owns this row now; stopping")
            return None
        except PermanentTaskError as exc:
            outcome = _Outcome(TaskStatus.FAILED, str(exc))
        except DeliveryError as exc:
            outcome = _after_failure(settings, claim, str(exc), exc.transient, exc.retry_after)
        except TimeoutError:
            error = f"timed out after {timeout:g}s"
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
        return outcome if await _settle(runtime, kind, claim, outcome) else None


@asynccontextmanager
async def _renewing(runtime: Runtime, kind: TaskKind, claim: Claim) -> AsyncIterator[None]:
    """Renew the lease in the background while the block runs, if the kind asks for it."""
    if not kind.renews_lease:
        yield
        return
    stop = asyncio.Event()
    heartbeat = asyncio.create_task(_renew_lease(runtime, kind, claim, stop))
    try:
        yield
    finally:
        # Let a renewal in flight finish and record its token, so the settle
        # that follows is fenced by the lease the row really has.
        stop.set()
        await heartbeat


async def _renew_lease(runtime: Runtime, kind: TaskKind, claim: Claim, stop: asyncio.Event) -> None:
    """Every third of a lease, move it a full lease ahead. Never raises."""
    seconds = runtime.settings.task_lease_seconds

    async def extend(lease_until: datetime) -> datetime | None:
        renewed_until = utcnow() + timedelta(seconds=seconds)
        async with single_statement(runtime.engine) as connection:
            renewed = await tasks_repo.renew_lease(
                connection,
                kind.state,
                claim.row_id,
                lease_until=lease_until,
                renewed_until=renewed_until,
            )
        return renewed_until if renewed else None

    while True:
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds / 3)
        if stop.is_set():
            return
        try:
            renewed = await claim.lease.renew(extend)
        except (DBAPIError, OSError) as exc:
            # Two thirds of the lease are left: try again at the next beat.
            logger.warning("lease renewal failed (%s); trying again", type(exc).__name__)
            continue
        except Exception:
            logger.exception("lease renewal failed unexpectedly; no more renewals")
            return
        if not renewed:
            # The work's own fenced writes will find out, and stop it.
            logger.warning("lease lost before renewal: another run owns this row now")
            return


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


async def _settle(runtime: Runtime, kind: TaskKind, claim: Claim, outcome: _Outcome) -> bool:
    """Record the outcome, retrying while the database is briefly unreachable.

    False if the lease was lost first: another run owns the row, and its
    outcome is the one that counts.

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
        return False
    _count(kind, outcome.status)
    log = logger.info if outcome.status is TaskStatus.SUCCEEDED else logger.warning
    log(
        "task %s",
        outcome.status,
        extra={"fields": {"error": outcome.error} if outcome.error else {}},
    )
    return True


async def _write_settle(runtime: Runtime, kind: TaskKind, claim: Claim, outcome: _Outcome) -> bool:
    now = utcnow()
    next_attempt_at = (
        now + timedelta(seconds=outcome.retry_in) if outcome.retry_in is not None else None
    )
    async with claim.lease.held() as lease_until, single_statement(runtime.engine) as connection:
        return await tasks_repo.settle(
            connection,
            kind.state,
            claim.row_id,
            lease_until=lease_until,
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
