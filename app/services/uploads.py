"""CSV uploads: receive the file, record the owed import, and report on it."""

import csv
import io
import uuid
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import SessionFactory
from app.core.errors import UploadNotFound
from app.models.base import utcnow
from app.models.upload import Upload
from app.repositories import uploads as uploads_repo
from app.schemas.upload import UploadPage, UploadRead, UploadSummary
from app.services import cursor as page_cursor
from app.services import upload_storage
from app.services.idempotency import IdempotencyGuard, StoredResponse
from app.services.upload_storage import ReceivedFile

IDEMPOTENCY_SCOPE = "POST /uploads"
FIRST_ERRORS = 10
_ERRORS_PAGE = 1000
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


async def create(
    session: AsyncSession,
    settings: Settings,
    body: AsyncIterator[bytes],
    *,
    content_type: str | None,
    content_length: str | None,
    idempotency_key: str | None = None,
) -> UploadRead | StoredResponse:
    """Store the file, then commit the upload owing its import; or replay a repeated request.

    The file is complete and durable before the row that points at it
    commits; if the row does not commit (or the request is a replay), the
    file is removed again.
    """
    received = await upload_storage.receive(
        body, content_type=content_type, content_length=content_length, settings=settings
    )
    try:
        outcome = await _record(session, received, idempotency_key)
    except BaseException:
        await received.discard()
        raise
    if isinstance(outcome, StoredResponse):
        await received.discard()  # the first request's copy is the one being imported
    return outcome


async def _record(
    session: AsyncSession, received: ReceivedFile, idempotency_key: str | None
) -> UploadRead | StoredResponse:
    now = utcnow()
    guard = IdempotencyGuard(IDEMPOTENCY_SCOPE, idempotency_key)
    async with session.begin():
        # The same bytes and the same choice: the same request.
        request = {"sha256": received.sha256, "send_welcome": received.send_welcome}
        replay = await guard.reserve(session, request, now)
        if replay is not None:
            return replay
        upload = await uploads_repo.insert_upload(
            session,
            upload_id=received.upload_id,
            filename=received.filename,
            stored_name=received.stored_name,
            size_bytes=received.size_bytes,
            sha256=received.sha256,
            send_welcome=received.send_welcome,
            now=now,
        )
        created = UploadRead.with_errors(upload, [])
        response = StoredResponse(202, created.model_dump(mode="json"), upload_location(upload.id))
        await guard.remember(session, response)
    # Committed: only now may the caller schedule the import.
    return created


def upload_location(upload_id: uuid.UUID) -> str:
    return f"/uploads/{upload_id}"


async def get(session: AsyncSession, upload_id: uuid.UUID) -> UploadRead:
    async with session.begin():
        upload = await _existing(session, upload_id)
        errors = await uploads_repo.row_errors(session, upload_id, after_line=0, limit=FIRST_ERRORS)
        return UploadRead.with_errors(upload, errors)


async def recent(session: AsyncSession, *, cursor: str | None, limit: int) -> UploadPage:
    """Uploads newest first, a page at a time."""
    before = page_cursor.decode(cursor) if cursor else None
    async with session.begin():
        uploads = await uploads_repo.list_recent(session, before=before, limit=limit + 1)
    page = uploads[:limit]
    next_cursor = (
        page_cursor.encode(page[-1].created_at, page[-1].id) if len(uploads) > limit else None
    )
    return UploadPage(items=[UploadSummary.from_model(u) for u in page], next_cursor=next_cursor)


async def ensure_exists(session: AsyncSession, upload_id: uuid.UUID) -> None:
    async with session.begin():
        await _existing(session, upload_id)


async def errors_csv(sessions: SessionFactory, upload_id: uuid.UUID) -> AsyncIterator[bytes]:
    """Every rejected row as CSV (line, email, name, reason), a page at a time.

    Each page is read in a short transaction of its own, so a slow download
    holds no connection between pages. The columns are those of an import, so
    the file can be corrected and uploaded again as it is (line and reason
    are then ignored columns). The cells echo what a client sent, and a
    spreadsheet would run some of them as formulas: see `as_text`.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["line", "email", "name", "reason"])
    after_line = 0
    while True:
        async with sessions() as session, session.begin():
            page = await uploads_repo.row_errors(
                session, upload_id, after_line=after_line, limit=_ERRORS_PAGE
            )
        writer.writerows(
            [error.line, as_text(error.email), as_text(error.name), as_text(error.reason)]
            for error in page
        )
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        if len(page) < _ERRORS_PAGE:
            return
        after_line = page[-1].line


def as_text(cell: str) -> str:
    """The cell with a leading `'` if a spreadsheet would take it for a formula.

    The OWASP rule for CSV injection: `=`, `+`, `-`, `@`, tab and CR at the
    start make Excel, LibreOffice and Sheets evaluate the cell (and `=cmd|...`
    can run a program); after a `'` they show it as text.
    """
    return f"'{cell}" if cell.startswith(_FORMULA_PREFIXES) else cell


async def _existing(session: AsyncSession, upload_id: uuid.UUID) -> Upload:
    upload = await uploads_repo.get(session, upload_id)
    if upload is None:
        raise UploadNotFound(f"no upload with id {upload_id}")
    return upload
