"""The background-task contract, implemented once: slot, claim, act under a timeout, settle.

The contract is stated in the README ("How it works", rules 1 to 9); the rule
numbers below are its. Every must-complete task is a TaskKind: where its state
lives (TaskState) and what it does (`perform`). There is one way through:

    run_tasks(kind, row_ids)         recovery: many rows; run_task: a BackgroundTask's one
      slot      wait for a free slot of the kind, before the claim (rule 7); a
                BackgroundTask that finds none queues its row for the kind's
                drainer instead, and returns
      claim     one conditional UPDATE ... RETURNING for as many rows as there
                are free slots; rows not returned are someone else's (rule 3)
      attempt   `perform` under the kind's time limit (rule 4), renewing the
                lease meanwhile if the kind asks for it (rule 8)
      settle    fenced by the lease (rule 5), shielded from cancellation, written
                with the other settles of the kind queued meanwhile (tasks.settling)
      retry     a backoff short enough to wait out here: the row goes round
                again as a batch of one; a longer one is left to recovery

Nothing raises out of it (rule 6): Starlette would skip a request's remaining
background tasks. Cut off by shutdown, an attempt hands its row back, due at
once, so the next process need not wait for the lease to run out.
"""

import asyncio
import contextvars
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import RowMapping

from app.core import metrics
from app.core.config import Settings
from app.core.db import is_database_unavailable, single_statement
from app.core.logging import log_context
from app.integrations.errors import DeliveryError
from app.models.base import TaskStatus, utcnow
from app.models.task_state import TaskState
from app.repositories import tasks as tasks_repo
from app.tasks.runtime import Limiter, Runtime, current
from app.tasks.settling import Settle

logger = logging.getLogger(__name__)

# Long enough for any error message worth reading; short enough for a status page.
_ERROR_LIMIT = 1000
# How long a settle keeps retrying while the database is unreachable, at most:
# the work is done, and giving up means recovery does it again.
_SETTLE_PATIENCE = 0.8  # of the lease
# How long a claim for many rows waits for more slots to free up: a few
# milliseconds on the way to the work, against a statement per row.
_CLAIM_WINDOW_SECONDS = 0.003


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
    """A kind of must-complete work: its state columns and its business logic.

    `timeout` is one attempt's time limit. A kind whose attempts may outlast
    the lease (TASK_LEASE_SECONDS) must set `renews_lease`.
    """

    state: TaskState
    perform: Callable[[Runtime, Claim], Awaitable[None]]
    concurrency: Callable[[Settings], int]
    returning: tasks_repo.Returning = ()
    timeout: Callable[[Settings], float] = default_timeout
    renews_lease: bool = False

    @property
    def name(self) -> str:
        return self.state.name


@dataclass(frozen=True)
class _Outcome:
    status: TaskStatus
    error: str | None = None
    retry_in: float | None = None


# A run cut off by shutdown hands its row back, due at once.
_INTERRUPTED = _Outcome(TaskStatus.RETRYING, "interrupted by shutdown", retry_in=0)


async def run_task(kind: TaskKind, row_id: uuid.UUID) -> TaskStatus | None:
    """A BackgroundTask's run: one row, retried here while its backoff is short
    (TASK_INLINE_RETRY_SECONDS in all). Where it ended, as for `run_tasks`.

    With every slot of its kind taken, the row is queued instead, and this
    returns None at once: the kind's drainer runs it when a slot frees (see
    runtime.Limiter), and the request whose task this is can be let go.
    """
    with log_context(task=kind.name):
        runtime = _runtime()
        if runtime is None:
            return None
        retry_within = runtime.settings.task_inline_retry_seconds
        limiter = runtime.limiters.of(kind)
        if not limiter.free:
            _queue(runtime, kind, limiter, row_id, retry_within)
            return None
        [status] = await _run(runtime, kind, [row_id], retry_within)
        return status


async def run_tasks(
    kind: TaskKind, row_ids: list[uuid.UUID], *, retry_inline: bool = False
) -> list[TaskStatus | None]:
    """Take each row as far as it can go now; return where each ended, in order.

    None means that row's run does not count: another run had it (or took it
    over, its lease having run out), it was not due, the backlog of runs
    waiting for a slot was full, or the database could not be reached. The row
    keeps its durable state either way, for recovery. Never raises an Exception.
    """
    with log_context(task=kind.name):
        runtime = _runtime()
        if runtime is None:
            return [None] * len(row_ids)
        retry_within = runtime.settings.task_inline_retry_seconds if retry_inline else 0.0
        return await _run(runtime, kind, row_ids, retry_within)


def _runtime() -> Runtime | None:
    try:
        return current()
    except RuntimeError:
        logger.exception("no task runtime in this process; the rows stay due")
        return None


async def _run(
    runtime: Runtime, kind: TaskKind, row_ids: list[uuid.UUID], retry_within: float
) -> list[TaskStatus | None]:
    limiter = runtime.limiters.of(kind)
    if limiter.full:
        logger.info("backlog full; %d rows wait in the database", len(row_ids))
        return [None] * len(row_ids)
    statuses: dict[uuid.UUID, TaskStatus | None] = dict.fromkeys(row_ids)

    async def run(claim: Claim) -> None:
        statuses[claim.row_id] = await _run_claimed(runtime, kind, limiter, claim, retry_within)

    running: set[asyncio.Task[None]] = set()
    try:
        async for claim in _claims(runtime, kind, limiter, deque(row_ids)):
            task = asyncio.create_task(run(claim))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
    return [statuses[row_id] for row_id in row_ids]


def _queue(
    runtime: Runtime, kind: TaskKind, limiter: Limiter, row_id: uuid.UUID, retry_within: float
) -> None:
    if limiter.full:
        logger.info("backlog full; the row waits in the database")
        return
    limiter.queued.append(row_id)
    if limiter.drainer is None or limiter.drainer.done():
        # A context of its own: the log fields of the request that started it (its
        # request id) are not those of the rows the drainer runs.
        drain = _drain(runtime, kind, limiter, retry_within)
        limiter.drainer = asyncio.create_task(drain, context=contextvars.Context())


async def _drain(runtime: Runtime, kind: TaskKind, limiter: Limiter, retry_within: float) -> None:
    """Run the kind's queued rows, each as a slot frees (claimed together when several
    free about together); end when the queue is empty."""
    with log_context(task=kind.name):
        try:
            async for claim in _claims(runtime, kind, limiter, limiter.queued):
                limiter.start(_run_claimed(runtime, kind, limiter, claim, retry_within))
        finally:
            limiter.drainer = None


async def _claims(
    runtime: Runtime, kind: TaskKind, limiter: Limiter, waiting: deque[uuid.UUID]
) -> AsyncIterator[Claim]:
    """The rows won, each holding a slot: as many claimed per statement as slots are free
    (after a few milliseconds for the slots of attempts finishing about then), so a
    backlog drains without a claim round trip per row. `waiting` may grow meanwhile,
    or be emptied (at shutdown). Rows come in `waiting`'s order."""
    while waiting:
        await limiter.acquire()
        slots = 1
        try:
            if len(waiting) > 1:
                await asyncio.sleep(_CLAIM_WINDOW_SECONDS)
            while slots < len(waiting) and limiter.try_acquire():
                slots += 1
            chunk = [waiting.popleft() for _ in range(min(slots, len(waiting)))]
            claims = await _claim_or_hand_back(runtime, kind, chunk) if chunk else []
        except asyncio.CancelledError:
            for _ in range(slots):
                limiter.release()
            raise
        except Exception:
            logger.exception("claiming %d rows failed; they stay due", slots)
            claims = []
        for _ in range(slots - len(claims)):
            limiter.release()
        order = {row_id: position for position, row_id in enumerate(chunk)}
        for claim in sorted(claims, key=lambda claim: order[claim.row_id]):
            yield claim


async def _claim_or_hand_back(
    runtime: Runtime, kind: TaskKind, row_ids: list[uuid.UUID]
) -> list[Claim]:
    """`_claim`, carried through if the caller is cancelled (shutdown) meanwhile; the rows
    it won are then handed back, due at once, instead of waiting out a lease no attempt
    holds."""
    claiming = asyncio.ensure_future(_claim(runtime, kind, row_ids))
    try:
        return await asyncio.shield(claiming)
    except asyncio.CancelledError:
        with suppress(Exception):
            for claim in await claiming:
                await _settle(runtime, kind, claim, _INTERRUPTED)
        raise


async def _run_claimed(
    runtime: Runtime, kind: TaskKind, limiter: Limiter, claim: Claim, retry_within: float
) -> TaskStatus | None:
    """Attempt a claimed row, its slot freed by then; go round again if the backoff fits."""
    slot = _Slot(limiter)
    try:
        with log_context(row_id=str(claim.row_id)):
            outcome = await _attempt(runtime, kind, claim, slot)
    except Exception:
        # The settle failed (database unreachable?). The row keeps its durable
        # state, and recovery picks it up when it is due again.
        logger.exception("task stopped before settling; recovery will resume it")
        return None
    finally:
        slot.free()
    if outcome is None:
        return None
    if outcome.retry_in is None or outcome.retry_in > retry_within:
        return outcome.status
    await asyncio.sleep(outcome.retry_in)
    [status] = await _run(runtime, kind, [claim.row_id], retry_within - outcome.retry_in)
    return status


async def _claim(runtime: Runtime, kind: TaskKind, row_ids: list[uuid.UUID]) -> list[Claim]:
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


class _Slot:
    """A claimed row's slot of its kind's Limiter, freed once: when the attempt's side
    effect is over, so the next row's claim and attempt need not wait for this one's
    settle (the limit bounds the work in flight, not its bookkeeping)."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter: Limiter | None = limiter

    def free(self) -> None:
        if self._limiter is not None:
            self._limiter.release()
            self._limiter = None


async def _attempt(runtime: Runtime, kind: TaskKind, claim: Claim, slot: _Slot) -> _Outcome | None:
    """Perform and settle one claimed attempt; None if another run took the row over."""
    started = time.perf_counter()
    with log_context(attempt=claim.attempt), runtime.in_flight.track():
        try:
            outcome = await _perform(runtime, kind, claim)
            slot.free()
        except LeaseLost:
            logger.warning("lease lost: another run owns this row now; stopping")
            return None
        except asyncio.CancelledError:
            # Shutdown ran out of grace. Hand the row back, due at once, rather
            # than leave it to wait out its lease; then let the cancellation go on.
            await asyncio.shield(_settle(runtime, kind, claim, _INTERRUPTED))
            raise
        if not await _settle(runtime, kind, claim, outcome):
            return None
        metrics.TASK_DURATION.labels(kind.name).observe(time.perf_counter() - started)
        return outcome


async def _perform(runtime: Runtime, kind: TaskKind, claim: Claim) -> _Outcome:
    """Run the kind's business logic under its time limit; what it came to."""
    settings = runtime.settings
    timeout = kind.timeout(settings)
    try:
        async with asyncio.timeout(timeout), _renewing(runtime, kind, claim):
            await kind.perform(runtime, claim)
    except PermanentTaskError as exc:
        return _Outcome(TaskStatus.FAILED, str(exc))
    except DeliveryError as exc:
        return _after_failure(settings, claim, str(exc), exc.transient, exc.retry_after)
    except TimeoutError:
        return _after_failure(settings, claim, f"timed out after {timeout:g}s", transient=True)
    except LeaseLost:
        raise
    except Exception as exc:
        logger.exception("task failed unexpectedly")
        error = f"unexpected error: {type(exc).__name__}: {exc}"
        return _after_failure(settings, claim, error, transient=True)
    return _Outcome(TaskStatus.SUCCEEDED)


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
        except Exception as exc:
            if not is_database_unavailable(exc):
                logger.exception("lease renewal failed unexpectedly; no more renewals")
                return
            # Two thirds of the lease are left: try again at the next beat.
            logger.warning("lease renewal failed (%s); trying again", type(exc).__name__)
            continue
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
        except Exception as exc:
            if not is_database_unavailable(exc) or time.monotonic() + pause > deadline:
                raise
            logger.warning("settle failed (%s); retrying in %.1fs", type(exc).__name__, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
    if not settled:
        logger.warning("lease lost before settling; another run owns this row now")
        return False
    _count(kind, outcome.status)
    # A success is counted (metrics, the admin API); a line per row at INFO would cost a
    # busy drain more CPU than its claim. What went wrong is logged at WARNING.
    log = logger.debug if outcome.status is TaskStatus.SUCCEEDED else logger.warning
    log(
        "task %s",
        outcome.status,
        extra={"fields": {"error": outcome.error} if outcome.error else {}},
    )
    return True


async def _write_settle(runtime: Runtime, kind: TaskKind, claim: Claim, outcome: _Outcome) -> bool:
    next_attempt_at = (
        utcnow() + timedelta(seconds=outcome.retry_in) if outcome.retry_in is not None else None
    )
    async with claim.lease.held() as lease_until:
        settle = Settle(
            claim.row_id,
            lease_until,
            outcome.status,
            last_error=outcome.error[:_ERROR_LIMIT] if outcome.error else None,
            next_attempt_at=next_attempt_at,
        )
        return await runtime.settlers.of(kind.state).settle(settle)


def _count(kind: TaskKind, status: TaskStatus) -> None:
    counter = {
        TaskStatus.SUCCEEDED: metrics.TASKS_SUCCEEDED,
        TaskStatus.RETRYING: metrics.TASKS_RETRIED,
        TaskStatus.FAILED: metrics.TASKS_FAILED,
    }[status]
    counter.labels(kind.name).inc()
