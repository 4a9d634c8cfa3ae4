"""/admin: background work for operators (scope `admin`), and /metrics (scope `metrics`)."""

import uuid
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.core import metrics
from app.core.errors import problem_responses
from app.core.openapi import success_response
from app.routers.deps import AfterCommitDep, SessionDep
from app.routers.security import AUTH_ERRORS, requires
from app.schemas import examples
from app.schemas.admin import FailedTaskPage, TaskKindName, TaskRead, TasksOverview
from app.schemas.audit import AuditPage
from app.schemas.query import CursorQuery, LimitQuery, Moment
from app.services import admin, audit
from app.services.admin import TaskNotFailed, TaskNotFound
from app.services.api_keys import Scope
from app.tasks.registry import run_named_task

router = APIRouter(tags=["admin"])


@router.get(
    "/admin/tasks",
    response_model=TasksOverview,
    summary="Counts per task kind and status, and the oldest due row's age",
    responses={
        **success_response(200, "Every kind of background work, counted.", examples.TASKS),
        **problem_responses(*AUTH_ERRORS, validation=False),
    },
    dependencies=[requires(Scope.ADMIN)],
)
async def tasks_overview(session: SessionDep) -> TasksOverview:
    return await admin.overview(session)


@router.get(
    "/admin/tasks/failed",
    response_model=FailedTaskPage,
    summary="Dead letters: failed tasks, newest first, a page at a time",
    responses={
        **success_response(
            200, "A page of failed tasks, newest failure first.", examples.FAILED_TASKS
        ),
        **problem_responses(*AUTH_ERRORS),
    },
    dependencies=[requires(Scope.ADMIN)],
)
async def failed_tasks(
    session: SessionDep,
    kind: Annotated[TaskKindName | None, Query(description="Only this task kind.")] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> FailedTaskPage:
    return await admin.failed(session, kind=kind, cursor=cursor, limit=limit)


@router.post(
    "/admin/tasks/{kind}/{task_id}/retry",
    status_code=202,
    response_model=TaskRead,
    summary="Retry a failed task with a fresh set of attempts",
    responses={
        **success_response(
            202,
            "Re-armed (`pending`, attempts from zero), run after this response.",
            examples.TASK_RETRIED,
        ),
        **problem_responses(*AUTH_ERRORS, TaskNotFound, TaskNotFailed),
    },
    dependencies=[requires(Scope.ADMIN)],
)
async def retry_task(
    kind: TaskKindName,
    task_id: uuid.UUID,
    session: SessionDep,
    after_commit: AfterCommitDep,
) -> TaskRead:
    task = await admin.retry(session, kind=kind, task_id=task_id)
    after_commit.schedule(
        partial(run_named_task, kind, task_id),
        action="task.retried",
        resource=f"tasks/{kind}/{task_id}",
    )
    return task


@router.get(
    "/admin/audit",
    response_model=AuditPage,
    summary="The audit trail: filtered, newest first, a page at a time",
    responses={
        **success_response(200, "A page of audit entries, newest first.", examples.AUDIT),
        **problem_responses(*AUTH_ERRORS),
    },
    dependencies=[requires(Scope.ADMIN)],
)
async def audit_trail(
    session: SessionDep,
    action: Annotated[str | None, Query(description="e.g. user.signed_up")] = None,
    resource: Annotated[str | None, Query(description="e.g. users/{id}")] = None,
    actor: Annotated[
        str | None, Query(description="An API key's name, anonymous, cli or startup.")
    ] = None,
    since: Annotated[Moment | None, Query(description="From this moment (inclusive).")] = None,
    until: Annotated[Moment | None, Query(description="Before this moment.")] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> AuditPage:
    return await audit.search(
        session,
        action=action,
        resource=resource,
        actor=actor,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics: task counters, durations, due backlog, recovery passes",
    response_class=Response,
    responses={
        200: {
            "content": {
                metrics.CONTENT_TYPE: {"schema": {"type": "string"}, "example": examples.METRICS}
            },
            "description": "Prometheus text format: this process's counters (or all "
            "workers'), then the due backlog read from the database.",
        },
        **problem_responses(*AUTH_ERRORS, validation=False),
    },
    dependencies=[requires(Scope.METRICS)],
)
async def prometheus_metrics(session: SessionDep) -> Response:
    due = await admin.due_counts(session)
    return Response(metrics.render(due), media_type=metrics.CONTENT_TYPE)
