"""/uploads: CSV bulk imports, answered at once and imported in the background."""

import uuid
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from app.core.config import Settings
from app.core.errors import problem_responses
from app.core.openapi import success_response
from app.core.request_limits import allow_body
from app.routers import multipart
from app.routers.deps import AfterCommitDep, DatabaseDep, SessionDep, SettingsDep
from app.routers.idempotency import IdempotencyKeyHeader
from app.routers.multipart import InvalidUpload
from app.routers.security import AUTH_ERRORS, requires
from app.schemas import examples
from app.schemas.query import CursorQuery, LimitQuery
from app.schemas.upload import UploadPage, UploadRead
from app.services import uploads
from app.services.api_keys import Scope
from app.services.idempotency import IdempotencyKeyInProgress
from app.services.upload_files import (
    EmptyUpload,
    IncomingFile,
    InsufficientStorage,
    UnsupportedUpload,
    UploadTooLarge,
)
from app.services.uploads import Form, Receive, UploadNotFound, upload_location
from app.tasks.csv_import import import_csv

router = APIRouter(
    prefix="/uploads",
    tags=["uploads"],
    responses=problem_responses(*AUTH_ERRORS, validation=False),
)

# The body is read as a stream by the service, not declared as FastAPI form
# parameters (which would spool the whole file first); this tells OpenAPI,
# and so Swagger UI, what to send, and states the rules the service applies:
# these two fields and no other, and a `file` that is text, not empty and
# free of NUL bytes. (OpenAPI 3.1 names the file's type with contentMediaType;
# Swagger UI shows a file picker for it.)
# Room in a request, beyond the file itself, for boundaries, part headers and fields.
_ENVELOPE_BYTES = 64 * 1024

_MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {
                            "type": "string",
                            "contentMediaType": "text/csv",
                            "minLength": 1,
                            "pattern": "^[^\\x00]*$",
                            "description": "UTF-8 CSV with a header naming `email` and `name`; "
                            "at most UPLOAD_MAX_BYTES (413 beyond).",
                        },
                        "send_welcome": {
                            "type": "boolean",
                            "default": True,
                            "description": "Owe each imported user a welcome email.",
                        },
                    },
                },
                "encoding": {"file": {"contentType": "text/csv"}},
            }
        },
    }
}


@router.post(
    "",
    status_code=202,
    response_model=UploadRead,
    summary="Upload a CSV of people; they are imported in the background",
    responses={
        **success_response(
            202,
            "Accepted: the file is stored and its import owed (`pending`), run after this "
            "response. `Location` is the upload's URL, to follow its progress.",
            examples.UPLOAD_ACCEPTED,
        ),
        **problem_responses(
            UploadTooLarge,
            UnsupportedUpload,
            EmptyUpload,
            InvalidUpload,
            InsufficientStorage,
            IdempotencyKeyInProgress,
            body=True,
        ),
    },
    openapi_extra=_MULTIPART_BODY,
    dependencies=[requires(Scope.UPLOADS_WRITE)],
)
async def create_upload(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    after_commit: AfterCommitDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> UploadRead:
    upload = await uploads.create(
        session,
        receive=_receiver(request, settings),
        max_bytes=settings.upload_max_bytes,
        idempotency_key=idempotency_key,
    )
    return after_commit.created(
        upload,
        location=upload_location(upload.id),
        work=partial(import_csv, upload.id),
        action="upload.created",
    )


def _receiver(request: Request, settings: Settings) -> Receive:
    """What reads the body into the service's IncomingFile; 415 or 413 now, if the headers
    say so already."""
    form_boundary = multipart.boundary(request.headers.get("content-type"), file_field="file")
    most = settings.upload_max_bytes + _ENVELOPE_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > most:
        # Said up front: refuse before reading a byte of it.
        raise UploadTooLarge(
            f"the file is larger than the limit of {settings.upload_max_bytes} bytes"
        )
    # The file streams on under the upload's own cap, not the JSON bodies' one.
    allow_body(request.scope, most)

    async def receive(incoming: IncomingFile) -> Form:
        form = await multipart.read_form(
            request.stream(),
            boundary=form_boundary,
            file_field="file",
            other_fields=frozenset({"send_welcome"}),
            sink=incoming,
        )
        return Form(form.filename, _boolean(form.fields.get("send_welcome")))

    return receive


def _boolean(value: str | None) -> bool:
    """send_welcome, which the schema types as boolean: `true` or `false`, as a form sends it."""
    if value is None:
        return True
    cleaned = value.strip().lower()
    if cleaned in ("true", "false"):
        return cleaned == "true"
    raise InvalidUpload(f"send_welcome must be true or false, not {cleaned[:20]!r}")


@router.get(
    "",
    response_model=UploadPage,
    summary="Recent uploads, newest first, a page at a time",
    responses={
        **success_response(200, "A page of uploads, newest first.", examples.UPLOADS),
        **problem_responses(),
    },
    dependencies=[requires(Scope.UPLOADS_READ)],
)
async def list_uploads(
    session: SessionDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> UploadPage:
    return await uploads.recent(session, cursor=cursor, limit=limit)


@router.get(
    "/{upload_id}",
    response_model=UploadRead,
    summary="An upload's import: status, counts (updated per batch), first rejected rows",
    responses={
        **success_response(
            200,
            "The upload and its import as they stand now (the counts move per batch).",
            examples.UPLOAD_IMPORTED,
        ),
        **problem_responses(UploadNotFound),
    },
    dependencies=[requires(Scope.UPLOADS_READ)],
)
async def get_upload(upload_id: uuid.UUID, session: SessionDep) -> UploadRead:
    return await uploads.get(session, upload_id=upload_id)


@router.get(
    "/{upload_id}/errors.csv",
    response_class=StreamingResponse,
    summary="Every rejected row with its line number and reason, as CSV",
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}, "example": examples.ERRORS_CSV}},
            "description": "CSV with the columns line, email, name, reason: every rejected row "
            "so far, in file order.",
        },
        **problem_responses(UploadNotFound),
    },
    dependencies=[requires(Scope.UPLOADS_READ)],
)
async def upload_errors(
    upload_id: uuid.UUID, session: SessionDep, database: DatabaseDep
) -> StreamingResponse:
    await uploads.ensure_exists(session, upload_id=upload_id)
    return StreamingResponse(
        uploads.errors_csv(database.request_sessions, upload_id=upload_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="upload-{upload_id}-errors.csv"'},
    )
