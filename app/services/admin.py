"""Background work as operators see it: counts, dead letters, and a retry button."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import TaskNotFailed, TaskNotFound
from app.models.base import utcnow
from app.repositories import tasks as tasks_repo
from app.schemas.admin import (
    FailedTaskPage,
    FailedTaskRead,
    TaskKindName,
    TaskKindSummary,
    TaskRead,
    TasksOverview,
    task_kind_name,
)
from app.services import cursor as page_cursor
from app.tasks.registry import MUST_COMPLETE


async def overview(session: AsyncSession) -> TasksOverview:
    now = utcnow()
    summaries = []
    async with session.begin():
        for name, kind in MUST_COMPLETE.items():
            counts = await tasks_repo.count_by_status(session, kind.state)
            due, oldest = await tasks_repo.due_summary(session, kind.state, now=now)
            age = (now - oldest).total_seconds() if oldest is not None else None
            summaries.append(
                TaskKindSummary(
                    kind=task_kind_name(name), counts=counts, due=due, oldest_due_age_seconds=age
                )
            )
    return TasksOverview(kinds=summaries)


async def due_counts(session: AsyncSession) -> dict[str, int]:
    now = utcnow()
    async with session.begin():
        return {
            name: (await tasks_repo.due_summary(session, kind.state, now=now))[0]
            for name, kind in MUST_COMPLETE.items()
        }


async def failed(
    session: AsyncSession, *, kind: TaskKindName | None, cursor: str | None, limit: int
) -> FailedTaskPage:
    """Dead letters of every kind (or one), newest failure first, a page at a time."""
    before = page_cursor.decode(cursor) if cursor else None
    kinds = {kind: MUST_COMPLETE[kind]} if kind else MUST_COMPLETE
    items: list[FailedTaskRead] = []
    async with session.begin():
        for name, task_kind in kinds.items():
            rows = await tasks_repo.list_failed(
                session, task_kind.state, before=before, limit=limit + 1
            )
            items.extend(FailedTaskRead(kind=task_kind_name(name), **row) for row in rows)
    items.sort(key=lambda item: (item.failed_at, item.id), reverse=True)
    page = items[:limit]
    more = len(items) > limit
    next_cursor = page_cursor.encode(page[-1].failed_at, page[-1].id) if more else None
    return FailedTaskPage(items=page, next_cursor=next_cursor)


async def task(session: AsyncSession, *, kind: TaskKindName, task_id: uuid.UUID) -> TaskRead:
    """One task as it stands now: to watch it after a retry."""
    async with session.begin():
        row = await tasks_repo.get_task(session, MUST_COMPLETE[kind].state, task_id)
    if row is None:
        raise TaskNotFound(f"no {kind} task with id {task_id}")
    return TaskRead(kind=kind, **row)


async def retry(session: AsyncSession, kind_name: TaskKindName, row_id: uuid.UUID) -> TaskRead:
    """Re-arm a failed row with fresh attempts; committed before the caller schedules it."""
    kind = MUST_COMPLETE[kind_name]
    async with session.begin():
        row = await tasks_repo.rearm_failed(session, kind.state, row_id, now=utcnow())
        if row is not None:
            return TaskRead(kind=kind_name, **row)
        status = await tasks_repo.get_status(session, kind.state, row_id)
    if status is None:
        raise TaskNotFound(f"no {kind_name} task with id {row_id}")
    raise TaskNotFailed(f"this {kind_name} task is {status}, not failed")
