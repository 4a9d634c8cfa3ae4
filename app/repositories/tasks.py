"""SQL over the state columns every kind of background work shares (see TaskState).

The claim and settle statements run for every attempt of every task, so they
are built once per state with bound parameters; building a statement costs
more CPU than executing it.
"""

import uuid
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Label,
    Select,
    Update,
    and_,
    bindparam,
    func,
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.models.base import TaskStatus
from app.models.task_state import TaskState

Executor = AsyncConnection | AsyncSession
UNFINISHED = (TaskStatus.PENDING, TaskStatus.RETRYING)
# What a claim hands the task besides the attempt number: columns of the row,
# or labelled expressions (a correlated subquery for a related row's column
# saves the task a query of its own).
Returning = tuple[InstrumentedAttribute[Any] | Label[Any], ...]
# Bound parameter names differ from every state column's name ("lease", not
# "lease_until"): an UPDATE reserves its columns' names for its own parameters,
# and a state whose columns are plainly named (notifications) would collide.


def _mine(state: TaskState, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """The conditions, on this kind's rows only (see TaskState.where)."""
    everything = (*state.where, *conditions)
    return and_(*everything) if everything else true()


def _due(state: TaskState, due_before: Any) -> ColumnElement[bool]:
    return _mine(state, state.status.in_(UNFINISHED), state.next_attempt_at <= due_before)


def _abandoned(state: TaskState, now: Any) -> ColumnElement[bool]:
    """Running, but the lease ran out: the process that claimed it died."""
    return _mine(state, state.status == TaskStatus.RUNNING, state.lease_until < now)


# Bound parameters are named unlike any column ("lease", "renewed", "error"), since
# SQLAlchemy reserves a SET column's own name for its value, and a kind's state
# columns may be named plainly (`lease_until`, `last_error`).


@cache
def _claim_statement(state: TaskState, returning: Returning) -> Update:
    now: BindParameter[datetime] = bindparam("now")
    return (
        update(state.model)
        .where(
            state.id.in_(bindparam("row_ids", expanding=True)),
            or_(_due(state, now), _abandoned(state, now)),
        )
        .values(
            {
                state.status: TaskStatus.RUNNING,
                state.lease_until: bindparam("lease"),
                state.attempts: state.attempts + 1,
            }
        )
        .returning(state.id, state.attempts, *returning)
    )


async def claim(
    executor: Executor,
    state: TaskState,
    row_ids: list[uuid.UUID],
    *,
    now: datetime,
    lease_until: datetime,
    returning: Returning = (),
) -> list[RowMapping]:
    """Take those of the rows that are due or abandoned, with one atomic conditional
    UPDATE ... RETURNING; returns the rows won (the others are someone else's)."""
    result = await executor.execute(
        _claim_statement(state, returning),
        {"row_ids": row_ids, "now": now, "lease": lease_until},
    )
    return list(result.mappings())


def _fenced(state: TaskState) -> Update:
    return update(state.model).where(
        state.id == bindparam("row_id"),
        state.status == TaskStatus.RUNNING,
        # The lease the claim (or its last renewal) wrote is the fencing token:
        # if it changed, that lease expired and another run owns the row now.
        state.lease_until == bindparam("lease"),
    )


@cache
def _renew_statement(state: TaskState) -> Update:
    return _fenced(state).values({state.lease_until: bindparam("renewed")}).returning(state.id)


async def renew_lease(
    executor: Executor,
    state: TaskState,
    row_id: uuid.UUID,
    *,
    lease_until: datetime,
    renewed_until: datetime,
) -> bool:
    """Extend a lease we still hold; False if another run took the row over meanwhile."""
    result = await executor.execute(
        _renew_statement(state), {"row_id": row_id, "lease": lease_until, "renewed": renewed_until}
    )
    return result.first() is not None


@cache
def _settle_statements(state: TaskState) -> dict[TaskStatus, Update]:
    fenced = _fenced(state)
    common: dict[Any, Any] = {state.lease_until: None, state.last_error: bindparam("error")}
    return {
        TaskStatus.SUCCEEDED: fenced.values(
            {
                **common,
                state.status: TaskStatus.SUCCEEDED,
                state.next_attempt_at: None,
                state.done_at: bindparam("now"),
            }
        ).returning(state.id),
        TaskStatus.RETRYING: fenced.values(
            {
                **common,
                state.status: TaskStatus.RETRYING,
                state.next_attempt_at: bindparam("retry_at"),
            }
        ).returning(state.id),
        TaskStatus.FAILED: fenced.values(
            {
                **common,
                state.status: TaskStatus.FAILED,
                state.next_attempt_at: None,
                state.failed_at: bindparam("now"),
            }
        ).returning(state.id),
    }


async def settle(
    executor: Executor,
    state: TaskState,
    row_id: uuid.UUID,
    *,
    lease_until: datetime,
    status: TaskStatus,
    now: datetime,
    last_error: str | None = None,
    next_attempt_at: datetime | None = None,
) -> bool:
    """Record an attempt's outcome; False if the lease was lost to another run."""
    result = await executor.execute(
        _settle_statements(state)[status],
        {
            "row_id": row_id,
            "lease": lease_until,
            "now": now,
            "error": last_error,
            "retry_at": next_attempt_at,
        },
    )
    return result.first() is not None


def due_statement(
    state: TaskState, *, now: datetime, due_before: datetime, limit: int
) -> Select[uuid.UUID]:
    """Rows recovery should run: due before `due_before`, or abandoned. Oldest first.

    Two queries, each served by its partial index (`..._due`, `..._lease`),
    rather than one OR that the planner might answer with a table scan.
    """
    due = (
        select(state.id, state.next_attempt_at.label("since"))
        .where(_due(state, due_before))
        .order_by(state.next_attempt_at)
        .limit(limit)
    )
    abandoned = (
        select(state.id, state.lease_until.label("since"))
        .where(_abandoned(state, now))
        .order_by(state.lease_until)
        .limit(limit)
    )
    # Each side as a subquery of its own: SQLite refuses ORDER BY/LIMIT directly
    # inside a UNION member.
    both = union_all(select(due.subquery()), select(abandoned.subquery())).subquery()
    return select(both.c.id).order_by(both.c.since).limit(limit)


async def due_ids(
    executor: Executor, state: TaskState, *, now: datetime, due_before: datetime, limit: int
) -> list[uuid.UUID]:
    statement = due_statement(state, now=now, due_before=due_before, limit=limit)
    return list((await executor.execute(statement)).scalars())


async def abandon_exhausted(
    executor: Executor, state: TaskState, *, now: datetime, max_attempts: int
) -> int:
    """Fail rows whose last allowed attempt died with its process, instead of retrying forever.

    A message that crashes the process on every attempt would otherwise be
    claimed again after each lease, without end.
    """
    result = await executor.execute(
        update(state.model)
        .where(_abandoned(state, now), state.attempts >= max_attempts)
        .values(
            {
                state.status: TaskStatus.FAILED,
                state.lease_until: None,
                state.failed_at: now,
                state.last_error: "the process running the last attempt stopped before settling",
            }
        )
        .returning(state.id)
    )
    return len(result.all())


async def count_by_status(executor: Executor, state: TaskState) -> dict[TaskStatus, int]:
    """Rows in each status; rows that owe no such work (NULL status) are not tasks."""
    result = await executor.execute(
        select(state.status, func.count())
        .where(_mine(state, state.status.is_not(None)))
        .group_by(state.status)
    )
    counts = dict.fromkeys(TaskStatus, 0)
    counts.update({TaskStatus(status): count for status, count in result if status is not None})
    return counts


async def due_summary(
    executor: Executor, state: TaskState, *, now: datetime
) -> tuple[int, datetime | None]:
    """How many rows are due now, and since when the oldest has been."""
    due = select(state.next_attempt_at.label("since")).where(_due(state, now))
    abandoned = select(state.lease_until.label("since")).where(_abandoned(state, now))
    both = union_all(due, abandoned).subquery()
    row = (await executor.execute(select(func.count(), func.min(both.c.since)))).one()
    return int(row[0]), row[1]


def _task_columns(state: TaskState) -> tuple[Any, ...]:
    """A row's task state under the names the admin API uses."""
    return (
        state.id.label("id"),
        state.status.label("status"),
        state.attempts.label("attempts"),
        state.last_error.label("last_error"),
        state.created_at.label("created_at"),
        state.failed_at.label("failed_at"),
    )


async def list_failed(
    executor: Executor,
    state: TaskState,
    *,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[RowMapping]:
    """Dead letters, newest failure first; `before` is the (failed_at, id) to continue after."""
    statement = select(*_task_columns(state)).where(_mine(state, state.status == TaskStatus.FAILED))
    if before is not None:
        statement = statement.where(tuple_(state.failed_at, state.id) < tuple_(*before))
    statement = statement.order_by(state.failed_at.desc(), state.id.desc()).limit(limit)
    return list((await executor.execute(statement)).mappings())


async def rearm_failed(
    executor: Executor, state: TaskState, row_id: uuid.UUID, *, now: datetime
) -> RowMapping | None:
    """Make a failed row due again, with a fresh set of attempts; None if it is not failed."""
    result = await executor.execute(
        update(state.model)
        .where(_mine(state, state.id == row_id, state.status == TaskStatus.FAILED))
        .values(
            {
                state.status: TaskStatus.PENDING,
                state.attempts: 0,
                state.next_attempt_at: now,
                state.failed_at: None,
            }
        )
        .returning(*_task_columns(state))
    )
    return result.mappings().one_or_none()


async def get_task(executor: Executor, state: TaskState, row_id: uuid.UUID) -> RowMapping | None:
    """One row's task state; None if there is no such row, or it owes no such work."""
    result = await executor.execute(
        select(*_task_columns(state)).where(
            _mine(state, state.id == row_id, state.status.is_not(None))
        )
    )
    return result.mappings().one_or_none()


async def get_status(executor: Executor, state: TaskState, row_id: uuid.UUID) -> TaskStatus | None:
    result = await executor.execute(select(state.status).where(_mine(state, state.id == row_id)))
    status = result.scalar_one_or_none()
    return TaskStatus(status) if status is not None else None
