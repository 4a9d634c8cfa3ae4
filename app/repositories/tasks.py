"""SQL over the state columns every kind of background work shares (see TaskState).

The claim and settle statements run for every attempt of every task, so they
are built once per state with bound parameters; building a statement costs
more CPU than executing it.
"""

import uuid
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Label,
    Select,
    Update,
    bindparam,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.models.base import TaskStatus
from app.models.task_state import TaskState
from app.repositories.pagination import Page, paginate

Executor = AsyncConnection | AsyncSession
UNFINISHED = (TaskStatus.PENDING, TaskStatus.RETRYING)
# What a claim hands the task besides the attempt number: columns of the row,
# or labelled expressions (a correlated subquery for a related row's column
# saves the task a query of its own).
Returning = tuple[InstrumentedAttribute[Any] | Label[Any], ...]


def _due(state: TaskState, due_before: Any) -> ColumnElement[bool]:
    return state.mine(state.status.in_(UNFINISHED), state.next_attempt_at <= due_before)


def _abandoned(state: TaskState, now: Any) -> ColumnElement[bool]:
    """Running, but the lease ran out: the process that claimed it died."""
    return state.mine(state.status == TaskStatus.RUNNING, state.lease_until < now)


# The statements below are built once per state, with bound parameters named
# unlike any column ("lease", not "lease_until"): SQLAlchemy reserves a SET
# column's own name for its value, and a kind's columns may be plainly named.


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
    """Take those of the rows that are due or abandoned; return the rows won (the others
    are someone else's). One atomic conditional UPDATE ... RETURNING (contract rule 3);
    for the welcome email, with nothing more returned:

        UPDATE users SET welcome_status='running',
                         welcome_attempts=(users.welcome_attempts + 1),
                         welcome_lease_until=:lease
        WHERE users.id IN (:row_ids)
          AND (users.welcome_status IN ('pending', 'retrying')
                 AND users.welcome_next_attempt_at <= :now
               OR users.welcome_status = 'running' AND users.welcome_lease_until < :now)
        RETURNING users.id, users.welcome_attempts

    (tests/repositories/test_task_sql.py keeps this and the statements below true.)
    """
    result = await executor.execute(
        _claim_statement(state, returning),
        {"row_ids": row_ids, "now": now, "lease": lease_until},
    )
    return list(result.mappings())


@cache
def _renew_statement(state: TaskState) -> Update:
    return (
        update(state.model)
        .where(state.fenced(bindparam("row_id"), bindparam("lease")))
        .values({state.lease_until: bindparam("renewed")})
        .returning(state.id)
    )


async def renew_lease(
    executor: Executor,
    state: TaskState,
    row_id: uuid.UUID,
    *,
    lease_until: datetime,
    renewed_until: datetime,
) -> bool:
    """Extend a lease we still hold; False if another run took the row over meanwhile.

    Fenced by the lease like a settle (see `settle`), and moving the fencing token on:

        UPDATE users SET welcome_lease_until=:renewed
        WHERE users.id = :row_id AND users.welcome_status = 'running'
          AND users.welcome_lease_until = :lease
        RETURNING users.id
    """
    result = await executor.execute(
        _renew_statement(state), {"row_id": row_id, "lease": lease_until, "renewed": renewed_until}
    )
    return result.first() is not None


@cache
def _settle_statements(state: TaskState) -> dict[TaskStatus, Update]:
    # Many rows in one statement, each fenced by its own lease (see `settle`).
    fenced = update(state.model).where(
        state.mine(
            state.status == TaskStatus.RUNNING,
            tuple_(state.id, state.lease_until).in_(bindparam("fences", expanding=True)),
        )
    )
    common: dict[Any, Any] = {state.lease_until: None, state.last_error: bindparam("error")}
    return {
        TaskStatus.SUCCEEDED: fenced.values(
            {
                **common,
                state.status: TaskStatus.SUCCEEDED,
                state.next_attempt_at: None,
                state.succeeded_at: bindparam("now"),
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
    fences: list[tuple[uuid.UUID, datetime]],
    *,
    status: TaskStatus,
    now: datetime,
    last_error: str | None = None,
    next_attempt_at: datetime | None = None,
) -> set[uuid.UUID]:
    """Record the same outcome for several attempts at once; return the rows settled.

    `fences` pairs each row with the lease_until its run's claim, or last
    renewal, wrote: the fencing token (contract rule 5). Once a lease ran out
    and another run claimed the row, the row's lease moved on and its pair
    matches nothing, though the status is still 'running'; a row missing from
    the result was lost to another run. For the welcome email, successes:

        UPDATE users SET welcome_status='succeeded', welcome_next_attempt_at=NULL,
                         welcome_lease_until=NULL, welcome_succeeded_at=:now,
                         welcome_last_error=:error
        WHERE users.welcome_status = 'running'
          AND (users.id, users.welcome_lease_until) IN (:fences)
        RETURNING users.id

    A retry and a failure are fenced alike, and differ in what they set:

        SET welcome_status='retrying', welcome_next_attempt_at=:retry_at,
            welcome_lease_until=NULL, welcome_last_error=:error

        SET welcome_status='failed', welcome_next_attempt_at=NULL, welcome_lease_until=NULL,
            welcome_failed_at=:now, welcome_last_error=:error
    """
    result = await executor.execute(
        _settle_statements(state)[status],
        {"fences": fences, "now": now, "error": last_error, "retry_at": next_attempt_at},
    )
    return set(result.scalars())


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


def _attention_counts(state: TaskState) -> CompoundSelect[tuple[Any, int]]:
    """Rows in each status that needs attention: one arm per partial index (`..._due`,
    `..._lease`, `..._failed`), whose condition the arm repeats so the planner can
    use it, so the count costs the same however many rows are settled and done."""
    arms = (
        state.status.in_(UNFINISHED),
        state.status == TaskStatus.RUNNING,
        state.status == TaskStatus.FAILED,
    )
    return union_all(
        *(
            select(state.status, func.count()).where(state.mine(arm)).group_by(state.status)
            for arm in arms
        )
    )


async def count_by_status(executor: Executor, state: TaskState) -> dict[TaskStatus, int]:
    """Exact counts of the rows pending, retrying, running or failed (see _attention_counts).

    `succeeded` is left at 0: see `count_succeeded`.
    """
    result = await executor.execute(_attention_counts(state))
    counts = dict.fromkeys(TaskStatus, 0)
    counts.update({TaskStatus(row[0]): row[1] for row in result})
    return counts


# Below this many (as the planner reckons), succeeded rows are counted exactly.
EXACT_SUCCEEDED_BELOW = 10_000


async def count_succeeded(session: AsyncSession, state: TaskState) -> tuple[int, bool]:
    """How many rows succeeded, and whether that figure is an estimate.

    Succeeded rows are nearly every row and only grow, so counting them means
    reading the whole table. On PostgreSQL the planner's estimate (table
    statistics kept by autovacuum's ANALYZE) is taken once it reaches
    EXACT_SUCCEEDED_BELOW; under that the rows are counted. SQLite keeps no
    such statistics: it always counts.
    """
    succeeded = select(state.id).where(state.mine(state.status == TaskStatus.SUCCEEDED))
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        sql = succeeded.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        plan = (await session.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"))).scalar_one()
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        if estimate >= EXACT_SUCCEEDED_BELOW:
            return estimate, True
    count = await session.execute(select(func.count()).select_from(succeeded.subquery()))
    return int(count.scalar_one()), False


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
        literal(state.name).label("kind"),
        state.id.label("id"),
        state.status.label("status"),
        state.attempts.label("attempts"),
        state.last_error.label("last_error"),
        state.created_at.label("created_at"),
        state.failed_at.label("failed_at"),
    )


async def list_failed(
    executor: Executor, states: Iterable[TaskState], *, cursor: str | None, limit: int
) -> Page[RowMapping]:
    """A page of dead letters of these kinds together, newest failure first.

    One statement over every kind's `..._failed` index; each row says its kind.
    """
    failed = union_all(
        *(
            select(*_task_columns(state)).where(state.mine(state.status == TaskStatus.FAILED))
            for state in states
        )
    ).subquery()
    return await paginate(
        executor,
        select(failed),
        key=(failed.c.failed_at, failed.c.id),
        cursor=cursor,
        limit=limit,
    )


async def rearm_failed(
    executor: Executor, state: TaskState, row_id: uuid.UUID, *, now: datetime
) -> RowMapping | None:
    """Owe a failed row's work afresh (see TaskState.rearmed); None if it is not failed."""
    result = await executor.execute(
        update(state.model)
        .where(state.mine(state.id == row_id, state.status == TaskStatus.FAILED))
        .values(**state.rearmed(now))
        .returning(*_task_columns(state))
    )
    return result.mappings().one_or_none()


async def get_task(executor: Executor, state: TaskState, row_id: uuid.UUID) -> RowMapping | None:
    """One row's task state; None if there is no such row, or it owes no such work."""
    result = await executor.execute(
        select(*_task_columns(state)).where(
            state.mine(state.id == row_id, state.status.is_not(None))
        )
    )
    return result.mappings().one_or_none()


async def get_status(executor: Executor, state: TaskState, row_id: uuid.UUID) -> TaskStatus | None:
    result = await executor.execute(select(state.status).where(state.mine(state.id == row_id)))
    status = result.scalar_one_or_none()
    return TaskStatus(status) if status is not None else None
