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
"""

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import BindParameter, Update, and_, bindparam, or_, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import InstrumentedAttribute

from app.core.config import Settings
from app.core.db import execute_alone
from app.core.logging import log_context
from app.integrations.errors import DeliveryError
from app.models.base import Base, TaskStatus, utcnow
from app.tasks.runtime import Runtime, current

logger = logging.getLogger(__name__)

# Long enough for any error message worth reading; short enough for a status page.
_ERROR_LIMIT = 1000


@dataclass(frozen=True)
class TaskState:
    """The columns in which one kind of work keeps its state."""

    model: type[Base]
    id: InstrumentedAttribute[uuid.UUID]
    status: InstrumentedAttribute[TaskStatus]
    attempts: InstrumentedAttribute[int]
    next_attempt_at: InstrumentedAttribute[datetime | None]
    lease_until: InstrumentedAttribute[datetime | None]
    done_at: InstrumentedAttribute[datetime | None]
    last_error: InstrumentedAttribute[str | None]


@dataclass(frozen=True)
class Claim:
    """One attempt we own: the row's id, the attempt number, and the columns asked for."""

    row_id: uuid.UUID
    attempt: int
    lease_until: datetime
    row: RowMapping


@dataclass(frozen=True)
class TaskKind:
    """A kind of must-complete work: its name, its state columns and its business logic."""

    name: str
    state: TaskState
    perform: Callable[[Runtime, Claim], Awaitable[None]]
    concurrency: Callable[[Settings], int]
    returning: tuple[InstrumentedAttribute[Any], ...] = ()

    # The statements are built once per kind, with bound parameters: building
    # them per run costs more CPU than executing them.

    @cached_property
    def claim_statement(self) -> Update:
        state = self.state
        now: BindParameter[datetime] = bindparam("now")
        return (
            update(state.model)
            .where(
                state.id == bindparam("row_id"),
                or_(
                    and_(
                        state.status.in_([TaskStatus.PENDING, TaskStatus.RETRYING]),
                        state.next_attempt_at <= now,
                    ),
                    and_(state.status == TaskStatus.RUNNING, state.lease_until < now),
                ),
            )
            .values(
                {
                    state.status: TaskStatus.RUNNING,
                    state.lease_until: bindparam("lease_until"),
                    state.attempts: state.attempts + 1,
                }
            )
            .returning(state.attempts, *self.returning)
        )

    @cached_property
    def settle_statements(self) -> dict[TaskStatus, Update]:
        state = self.state
        fenced = update(state.model).where(
            state.id == bindparam("row_id"),
            state.status == TaskStatus.RUNNING,
            # The lease we wrote is our fencing token: if it changed, our lease
            # expired and another run owns the row now.
            state.lease_until == bindparam("lease_until"),
        )
        common: dict[Any, Any] = {
            state.lease_until: None,
            state.last_error: bindparam("last_error"),
        }
        return {
            TaskStatus.SUCCEEDED: fenced.values(
                {
                    **common,
                    state.status: TaskStatus.SUCCEEDED,
                    state.next_attempt_at: None,
                    state.done_at: bindparam("done_at"),
                }
            ).returning(state.id),
            TaskStatus.RETRYING: fenced.values(
                {
                    **common,
                    state.status: TaskStatus.RETRYING,
                    state.next_attempt_at: bindparam("next_attempt_at"),
                }
            ).returning(state.id),
            TaskStatus.FAILED: fenced.values(
                {**common, state.status: TaskStatus.FAILED, state.next_attempt_at: None}
            ).returning(state.id),
        }


@dataclass(frozen=True)
class _Outcome:
    status: TaskStatus
    error: str | None = None
    retry_in: float | None = None


async def run_task(kind: TaskKind, row_id: uuid.UUID) -> None:
    """Take one piece of work as far as it can go now. Never raises an Exception."""
    with log_context(task=kind.name, row_id=str(row_id)):
        try:
            runtime = current()
            limiter = runtime.limiter(kind.name, kind.concurrency(runtime.settings))
            if limiter.full:
                logger.info("backlog full; the row waits in the database for recovery")
                return
            budget = runtime.settings.task_inline_retry_seconds
            while True:
                async with limiter.slot():
                    claim = await claim_due(runtime, kind, row_id)
                    if claim is None:
                        return
                    retry_in = await _attempt(runtime, kind, claim)
                if retry_in is None or retry_in > budget:
                    return
                budget -= retry_in
                await asyncio.sleep(retry_in)
        except Exception:
            # Claim or settle failed (database unreachable?). The row keeps its
            # durable state, and recovery picks it up when it is due again.
            logger.exception("task stopped before settling; recovery will resume it")


async def claim_due(runtime: Runtime, kind: TaskKind, row_id: uuid.UUID) -> Claim | None:
    """Atomically take the row if it is due, or return None."""
    now = utcnow()
    lease_until = now + timedelta(seconds=runtime.settings.task_lease_seconds)
    rows = await execute_alone(
        runtime.engine,
        kind.claim_statement,
        {"row_id": row_id, "now": now, "lease_until": lease_until},
    )
    if not rows:
        return None
    row = rows[0]
    attempt = row[kind.state.attempts.key]
    return Claim(row_id=row_id, attempt=attempt, lease_until=lease_until, row=row)


async def _attempt(runtime: Runtime, kind: TaskKind, claim: Claim) -> float | None:
    """Perform and settle one claimed attempt; return the delay before a retry, if any."""
    settings = runtime.settings
    with log_context(attempt=claim.attempt):
        try:
            async with asyncio.timeout(settings.task_timeout_seconds):
                await kind.perform(runtime, claim)
        except DeliveryError as exc:
            outcome = _after_failure(settings, claim, str(exc), exc.transient, exc.retry_after)
        except TimeoutError:
            error = f"timed out after {settings.task_timeout_seconds:g}s"
            outcome = _after_failure(settings, claim, error, transient=True)
        except Exception as exc:
            logger.exception("task failed unexpectedly")
            error = f"unexpected error: {type(exc).__name__}: {exc}"
            outcome = _after_failure(settings, claim, error, transient=True)
        else:
            outcome = _Outcome(TaskStatus.SUCCEEDED)
        await _settle(runtime, kind, claim, outcome)
        return outcome.retry_in


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
    now = utcnow()
    parameters = {
        "row_id": claim.row_id,
        "lease_until": claim.lease_until,
        "last_error": outcome.error[:_ERROR_LIMIT] if outcome.error else None,
        "next_attempt_at": (
            now + timedelta(seconds=outcome.retry_in) if outcome.retry_in is not None else None
        ),
        "done_at": now,
    }
    statement = kind.settle_statements[outcome.status]
    if not await execute_alone(runtime.engine, statement, parameters):
        logger.warning("lease lost before settling; another run owns this row now")
        return
    log = logger.warning if outcome.status is not TaskStatus.SUCCEEDED else logger.info
    log(
        "task %s",
        outcome.status,
        extra={"fields": {"error": outcome.error} if outcome.error else {}},
    )
