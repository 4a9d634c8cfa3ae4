"""The operator console: pages a person opens, on the same services as the JSON API.

The pages (/console, /console/imports, /console/audit, /console/people) are
shells that hold no data, so anyone may load them. Their data arrives as HTML
fragments from the routes under them, fetched by htmx with the API key the
operator typed: it lives in the tab's sessionStorage (never a cookie, so there
is nothing for another site to ride on) and travels in the Authorization
header like any client's. Each fragment needs the scope its data needs in the
JSON API, and calls the same service. What changes something (retry, resend,
upload) is the JSON API's own route, called from the page: the console can do
nothing the API cannot, and is audited as the API is.
"""

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypedDict
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import TypeAdapter, ValidationError
from starlette.templating import Jinja2Templates

from app.core.errors import NotFound
from app.models.base import TaskStatus, utcnow
from app.routers.deps import SessionDep
from app.routers.security import PUBLIC, requires
from app.schemas.admin import TaskKindName, TaskRead
from app.schemas.fields import EmailParameter
from app.schemas.query import CursorQuery
from app.schemas.upload import UploadSummary
from app.schemas.user import UserRead
from app.services import admin, audit, notifications, uploads, users
from app.services.api_keys import Scope

_HERE = Path(__file__).resolve().parent.parent
ASSETS_DIR = _HERE / "static" / "console"
# htmx, pinned: the file as the htmx.org 2.0.11 package publishes it (dist/htmx.min.js),
# kept under its version's name. tests/routers/test_console.py holds it to this digest.
HTMX = "htmx-2.0.11.min.js"
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
_ASSET_TYPES = {".js": "text/javascript", ".css": "text/css"}
# A fixed list: a name from the request is never a path. Each URL carries the
# file's digest, so a browser may keep a file a day and still never mix versions.
_ASSET_VERSIONS = {
    name: hashlib.sha256((ASSETS_DIR / name).read_bytes()).hexdigest()[:12]
    for name in (HTMX, "console.js", "console.css")
}

# Pages, by path: their template, and the nav label.
PAGES = {
    "/console": ("work", "Work"),
    "/console/imports": ("imports", "Imports"),
    "/console/audit": ("audit", "Audit"),
    "/console/people": ("people", "People"),
}
# Work counts and the upload list refresh this often (seconds): often enough
# to watch, rarely enough that GET /admin/tasks (which counts every row) stays cheap.
POLL_SECONDS = 2
# A task, an import or a welcome email being watched until it settles.
WATCH_SECONDS = 1
SETTLED = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED})
PAGE_SIZE = 20

_templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
)

router = APIRouter(prefix="/console", include_in_schema=False)


def _root(request: Request) -> str:
    """The path prefix a proxy serves the service under (root_path), if any."""
    root_path: str = request.scope.get("root_path", "")
    return root_path.rstrip("/")


def _render(request: Request, template: str, **context: Any) -> HTMLResponse:
    root = _root(request)
    response: HTMLResponse = _templates.TemplateResponse(
        request,
        f"console/{template}.html",
        {
            "root": root,
            "asset": lambda name: f"{root}/console/assets/{name}?v={_ASSET_VERSIONS[name]}",
            "htmx": HTMX,
            "poll": POLL_SECONDS,
            "watch": WATCH_SECONDS,
            **context,
        },
    )
    return response


class Paging(TypedDict):
    here: str
    older: str | None
    newest: str | None


def _paging(
    request: Request, path: str, *, cursor: str | None, next_cursor: str | None, **query: str
) -> Paging:
    """A list fragment's links, each keeping its filters: this page, the older page after
    it, and back to the newest page (None where there is none)."""
    here = f"{_root(request)}/console/{path}"

    def at(**more: str | None) -> str:
        given = {name: value for name, value in {**query, **more}.items() if value is not None}
        return f"{here}?{urlencode(given)}" if given else here

    return {
        "here": at(cursor=cursor),
        "older": at(cursor=next_cursor) if next_cursor else None,
        "newest": at() if cursor else None,
    }


# --- Pages: public, and empty until a key fetches their data ---------------------------


def _page(path: str, template: str) -> None:
    async def page(request: Request) -> HTMLResponse:
        return _render(request, template, pages=PAGES, current=path)

    page.__name__ = f"{template}_page"
    router.add_api_route(
        path.removeprefix("/console"),
        page,
        methods=["GET"],
        response_class=HTMLResponse,
        dependencies=[PUBLIC],
    )


for _path, (_template, _label) in PAGES.items():
    _page(_path, _template)


@router.get("/assets/{name}", dependencies=[PUBLIC])
async def asset(name: str) -> FileResponse:
    if name not in _ASSET_VERSIONS:
        raise NotFound(f"no console asset {name!r}")
    return FileResponse(
        ASSETS_DIR / name,
        media_type=_ASSET_TYPES[Path(name).suffix],
        headers={"Cache-Control": "public, max-age=86400"},
    )


# --- Work: counts per kind, the failed list, one task watched after a retry ------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


@router.get("/tasks", dependencies=[requires(Scope.ADMIN)])
async def work_counts(request: Request, session: SessionDep) -> HTMLResponse:
    overview = await admin.overview(session)
    return _render(
        request,
        "work_counts",
        kinds=overview.kinds,
        statuses=list(TaskStatus),
        ages={kind.kind: _age(kind.oldest_due_age_seconds) for kind in overview.kinds},
        read_at=utcnow(),
    )


@router.get("/tasks/failed", dependencies=[requires(Scope.ADMIN)])
async def work_failed(
    request: Request, session: SessionDep, cursor: CursorQuery = None
) -> HTMLResponse:
    page = await admin.failed(session, kind=None, cursor=cursor, limit=PAGE_SIZE)
    return _render(
        request,
        "work_failed",
        tasks=[task_view(task) for task in page.items],
        **_paging(request, "tasks/failed", cursor=cursor, next_cursor=page.next_cursor),
    )


@dataclass(frozen=True)
class TaskView:
    task: TaskRead
    live: bool  # watched until it settles
    retryable: bool  # what POST /admin/tasks/{kind}/{id}/retry accepts: a failed task


def task_view(task: TaskRead) -> TaskView:
    return TaskView(task, task.status not in SETTLED, task.status == TaskStatus.FAILED)


@router.get("/tasks/{kind}/{task_id}", dependencies=[requires(Scope.ADMIN)])
async def work_task(
    request: Request, session: SessionDep, kind: TaskKindName, task_id: uuid.UUID
) -> HTMLResponse:
    task = await admin.task(session, kind=kind, task_id=task_id)
    return _render(request, "work_task", view=task_view(task))


# --- Imports: uploads newest first with their progress; one watched after an upload ----


@dataclass(frozen=True)
class UploadView:
    upload: UploadSummary
    percent: int  # of the file read
    live: bool


def upload_view(upload: UploadSummary) -> UploadView:
    if upload.status == TaskStatus.SUCCEEDED or upload.size_bytes == 0:
        percent = 100
    else:
        percent = min(100, upload.bytes_read * 100 // upload.size_bytes)
    return UploadView(upload, percent, upload.status not in SETTLED)


@router.get("/imports/uploads", dependencies=[requires(Scope.UPLOADS_READ)])
async def imports_list(
    request: Request, session: SessionDep, cursor: CursorQuery = None
) -> HTMLResponse:
    page = await uploads.recent(session, cursor=cursor, limit=PAGE_SIZE)
    return _render(
        request,
        "imports_list",
        uploads=[upload_view(upload) for upload in page.items],
        **_paging(request, "imports/uploads", cursor=cursor, next_cursor=page.next_cursor),
    )


@router.get("/imports/uploads/{upload_id}", dependencies=[requires(Scope.UPLOADS_READ)])
async def imports_one(request: Request, session: SessionDep, upload_id: uuid.UUID) -> HTMLResponse:
    upload = await uploads.get(session, upload_id=upload_id)
    return _render(request, "imports_one", view=upload_view(upload))


# --- Audit: the trail, filtered, a page at a time -------------------------------------


def _given(value: str | None) -> str | None:
    """A form's empty field means no filter."""
    return value.strip() or None if value is not None else None


def _moment(name: str, value: str | None) -> datetime | None:
    """A datetime-local field's value (no offset: the form says UTC), or an RFC 3339 one."""
    value = _given(value)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RequestValidationError(
            [
                {
                    "type": "datetime_from_date_parsing",
                    "loc": ("query", name),
                    "msg": "must be a date and time, e.g. 2026-11-22T10:00",
                    "input": value,
                }
            ]
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.get("/audit/entries", dependencies=[requires(Scope.ADMIN)])
async def audit_entries(
    request: Request,
    session: SessionDep,
    action: str | None = None,
    resource: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: CursorQuery = None,
) -> HTMLResponse:
    filters = {
        "action": _given(action),
        "resource": _given(resource),
        "actor": _given(actor),
        "since": _given(since),
        "until": _given(until),
    }
    page = await audit.search(
        session,
        action=filters["action"],
        resource=filters["resource"],
        actor=filters["actor"],
        since=_moment("since", since),
        until=_moment("until", until),
        cursor=cursor,
        limit=PAGE_SIZE,
    )
    given = {name: value for name, value in filters.items() if value is not None}
    return _render(
        request,
        "audit_entries",
        entries=page.items,
        details={entry.id: json.dumps(entry.details, sort_keys=True) for entry in page.items},
        filtered=bool(given),
        **_paging(request, "audit/entries", cursor=cursor, next_cursor=page.next_cursor, **given),
    )


# --- People: find a user, their welcome email and notifications -----------------------

_EMAIL = TypeAdapter(EmailParameter)


def user_view(user: UserRead) -> dict[str, Any]:
    welcome = user.welcome_email
    return {"user": user, "live": welcome is not None and welcome.status not in SETTLED}


@router.get("/people/search", dependencies=[requires(Scope.USERS_READ)])
async def people_search(
    request: Request,
    session: SessionDep,
    query: Annotated[str, Query(min_length=1, max_length=320)],
) -> HTMLResponse:
    """A user id, or an exact email address (normalised as the API normalises it)."""
    query = query.strip()
    try:
        user_id = uuid.UUID(query)
    except ValueError:
        pass
    else:
        return _render(
            request, "people_user", **user_view(await users.get(session, user_id=user_id))
        )
    try:
        email = _EMAIL.validate_python(query)
    except ValidationError as exc:
        reason = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "query"),
                    "msg": f"neither a user id nor a valid email address ({reason})",
                    "input": query,
                }
            ]
        ) from None
    found = await users.find_by_email(session, email=email)
    if not found:
        return _render(request, "people_none", email=email)
    return _render(request, "people_user", **user_view(found[0]))


@router.get("/people/{user_id}", dependencies=[requires(Scope.USERS_READ)])
async def people_user(request: Request, session: SessionDep, user_id: uuid.UUID) -> HTMLResponse:
    user = await users.get(session, user_id=user_id)
    return _render(request, "people_user", **user_view(user))


@router.get("/people/{user_id}/notifications", dependencies=[requires(Scope.NOTIFICATIONS_SEND)])
async def people_notifications(
    request: Request, session: SessionDep, user_id: uuid.UUID, cursor: CursorQuery = None
) -> HTMLResponse:
    page = await notifications.list_for_user(
        session, user_id=user_id, cursor=cursor, limit=PAGE_SIZE
    )
    return _render(
        request,
        "people_notifications",
        user_id=user_id,
        items=page.items,
        **_paging(
            request,
            f"people/{user_id}/notifications",
            cursor=cursor,
            next_cursor=page.next_cursor,
        ),
    )
