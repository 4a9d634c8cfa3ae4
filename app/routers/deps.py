"""Typed dependencies, so a route reads like its signature."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import BackgroundTasks, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import Database
from app.models.base import utcnow
from app.schemas.audit import AuditEntryCreate
from app.tasks.audit import write_audit_entry
from app.tasks.wake import Notifier

# Dependencies are `async def` even when they do not await: FastAPI runs plain
# `def` dependencies in a thread pool, a thread hop per request for nothing.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_session(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[AsyncSession]:
    # No commit here: this teardown runs after the background tasks (FastAPI
    # >= 0.118), far too late: services commit, then the route schedules (contract rule 1).
    async with database.request_sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


class Auditor:
    """Records audit entries for this request; each is written by a background task.

    Recording is explicit and comes after the route's own scheduling, so the
    audit write is queued behind the work it describes.
    """

    def __init__(self, request: Request, background_tasks: BackgroundTasks) -> None:
        self._background_tasks = background_tasks
        self._request_id: str | None = request.scope.get("state", {}).get("request_id")
        # The peer, or the client a trusted proxy forwarded (TRUSTED_PROXIES).
        self._client = request.client.host if request.client else None
        self._state = request.state

    @property
    def actor(self) -> str:
        """The name of the request's API key; read when recording, so the order in which
        FastAPI resolves this and the key does not matter."""
        caller = getattr(self._state, "caller", None)
        return caller.name if caller is not None else "anonymous"

    def record(self, action: str, resource: str, **details: Any) -> None:
        entry = AuditEntryCreate(
            id=uuid.uuid4(),
            occurred_at=utcnow(),
            actor=self.actor,
            action=action,
            resource=resource,
            request_id=self._request_id,
            client_address=self._client,
            details=details,
        )
        self._background_tasks.add_task(write_audit_entry, entry)


async def get_auditor(request: Request, background_tasks: BackgroundTasks) -> Auditor:
    return Auditor(request, background_tasks)


AuditorDep = Annotated[Auditor, Depends(get_auditor)]

T = TypeVar("T")
# Background work with its arguments bound: `functools.partial(send_welcome_email, user.id)`.
Work = Callable[[], Awaitable[object]]


class AfterCommit:
    """How a route ends once its service has committed a row and the work it owes.

    Contract rule 1: the work is scheduled only now, after the commit, so this
    process dying first can only delay it (recovery finds it), never lose it.
    It runs after the response; the request's audit entry is queued behind it.
    A pure web process (SERVE_BACKGROUND_WORK=false) runs none of it: it wakes
    the workers instead (`notifier`).
    """

    def __init__(
        self,
        background_tasks: BackgroundTasks,
        auditor: Auditor,
        response: Response,
        notifier: Notifier | None = None,
    ) -> None:
        self._background_tasks = background_tasks
        self._auditor = auditor
        self._response = response
        self._notifier = notifier

    def schedule(self, work: Work, *, action: str, resource: str, **details: Any) -> None:
        """Run `work` after the response (or wake a worker to), and audit `action` on
        `resource`."""
        if self._notifier is None:
            self._background_tasks.add_task(work)
        else:
            self._background_tasks.add_task(self._notifier.wake_workers)
        self._auditor.record(action, resource, **details)

    def created(self, row: T, *, location: str, work: Work, action: str, **details: Any) -> T:
        """As `schedule`, for a row just created at `location` (also its Location header)."""
        self.schedule(work, action=action, resource=location.removeprefix("/"), **details)
        self._response.headers["Location"] = location
        return row


async def get_after_commit(
    request: Request, background_tasks: BackgroundTasks, auditor: AuditorDep, response: Response
) -> AfterCommit:
    notifier: Notifier | None = request.app.state.notifier
    return AfterCommit(background_tasks, auditor, response, notifier)


AfterCommitDep = Annotated[AfterCommit, Depends(get_after_commit)]
