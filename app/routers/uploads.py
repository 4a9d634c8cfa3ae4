"""/uploads: CSV bulk imports, answered at once and ingested in the background."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from app.core.errors import (
    AUTH_ERRORS,
    EmptyUpload,
    IdempotencyKeyInProgress,
    InvalidUpload,
    UnsupportedUpload,
    UploadNotFound,
    UploadTooLarge,
    problem_responses,
)
from app.core.openapi import success_response
from app.core.request_limits import allow_body
from app.routers.deps import AuditDep, DatabaseDep, SessionDep, SettingsDep
from app.routers.idempotency import IdempotencyKeyHeader, replay
from app.routers.security import requires
from app.schemas import examples
from app.schemas.query import CursorQuery
from app.schemas.upload import UploadPage, UploadRead
from app.services import upload_storage, uploads
from app.services.api_keys import Scope
from app.services.idempotency import StoredResponse
from app.services.uploads import upload_location
from app.tasks.ingest_upload import ingest_upload

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
    background_tasks: BackgroundTasks,
    audit: AuditDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> UploadRead | JSONResponse:
    # The file streams to disk under the upload's own cap, not the JSON bodies' one.
    allow_body(request.scope, upload_storage.max_request_bytes(settings))
    outcome = await uploads.create(
        session,
        settings,
        request.stream(),
        content_type=request.headers.get("content-type"),
        content_length=request.headers.get("content-length"),
        idempotency_key=idempotency_key,
    )
    if isinstance(outcome, StoredResponse):
        return replay(outcome)
    # The file and the owed import are committed: scheduling now cannot lose
    # the import, only delay it until recovery if this process dies first.
    background_tasks.add_task(ingest_upload, outcome.id)
    audit.record("upload.created", f"uploads/{outcome.id}")
    response.headers["Location"] = upload_location(outcome.id)
    return outcome


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
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
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
    return await uploads.get(session, upload_id)


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
    await uploads.ensure_exists(session, upload_id)
    return StreamingResponse(
        uploads.errors_csv(database.request_sessions, upload_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="upload-{upload_id}-errors.csv"'},
    )
