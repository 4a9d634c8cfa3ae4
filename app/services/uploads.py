"""CSV uploads: store the file with the import it is owed, and report on it."""

import csv
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import SessionFactory
from app.core.errors import NotFound
from app.models.base import utcnow
from app.models.upload import Upload
from app.repositories import uploads as uploads_repo
from app.schemas.upload import UploadPage, UploadRead, UploadSummary
from app.services.idempotency import IdempotencyGuard
from app.services.upload_files import IncomingFile

IDEMPOTENCY_SCOPE = "POST /uploads"
FIRST_ERRORS = 10
_ERRORS_PAGE = 1000
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class UploadNotFound(NotFound):
    slug = "upload-not-found"
    title = "Upload not found"


def upload_location(upload_id: uuid.UUID) -> str:
    return f"/uploads/{upload_id}"


@dataclass(frozen=True)
class Form:
    """What came with the file."""

    filename: str  # as the client named it: data, never a path
    send_welcome: bool


# Reads the request's body, its file into the IncomingFile given: HTTP is the router's.
Receive = Callable[[IncomingFile], Awaitable[Form]]


async def create(
    session: AsyncSession,
    *,
    receive: Receive,
    max_bytes: int,
    idempotency_key: str | None = None,
) -> UploadRead:
    """The upload, its file and the import it is owed, committed together (contract rule 1).

    The file streams into the database inside this transaction: a body that
    is refused, breaks off or repeats an earlier request (its key and digest)
    rolls all of it back.
    """
    now = utcnow()
    guard = IdempotencyGuard(IDEMPOTENCY_SCOPE, idempotency_key)
    upload = uploads_repo.new_upload(upload_id=uuid.uuid4(), now=now)
    async with session.begin():
        incoming = IncomingFile(session, upload, max_bytes)
        form = await receive(incoming)
        file = await incoming.finish()
        # The same bytes and the same choice: the same request.
        await guard.reserve(
            session, {"sha256": file.sha256, "send_welcome": form.send_welcome}, now
        )
        upload.filename = form.filename
        upload.size_bytes = file.size_bytes
        upload.sha256 = file.sha256
        upload.send_welcome = form.send_welcome
        await session.flush()
        created = UploadRead.with_errors(upload, [])
        await guard.remember(
            session, status_code=202, created=created, location=upload_location(upload.id)
        )
    return created


async def get(session: AsyncSession, *, upload_id: uuid.UUID) -> UploadRead:
    async with session.begin():
        upload = await _existing(session, upload_id)
        errors = await uploads_repo.row_errors(session, upload_id, after_line=0, limit=FIRST_ERRORS)
        return UploadRead.with_errors(upload, errors)


async def recent(session: AsyncSession, *, cursor: str | None, limit: int) -> UploadPage:
    """Uploads newest first, a page at a time."""
    async with session.begin():
        page = await uploads_repo.list_recent(session, cursor=cursor, limit=limit)
    items = [UploadSummary.from_model(upload) for upload in page.items]
    return UploadPage(items=items, next_cursor=page.next_cursor)


async def ensure_exists(session: AsyncSession, *, upload_id: uuid.UUID) -> None:
    async with session.begin():
        await _existing(session, upload_id)


async def errors_csv(sessions: SessionFactory, *, upload_id: uuid.UUID) -> AsyncIterator[bytes]:
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
