"""Where an upload's bytes are kept: the database, in chunks of 1 MiB, written as they arrive.

- In the same transaction as the upload's row: a refused, broken or
  abandoned upload leaves nothing behind, and a committed upload is complete.
  Any process on any machine can import it; none needs a disk of its own.
- Refused the moment it passes UPLOAD_MAX_BYTES (413), holds a NUL byte (415:
  binary, not CSV), or was declared with a content type that is not CSV (415).
- Hashed (sha256) and counted on the way; held in memory one chunk at a time.
- The transaction begins with the first chunk written, so a small upload
  holds a database connection only for the moment it is committed. (On the
  embedded SQLite, whose one connection every request shares, a large upload
  holds it while it arrives.) A database out of room is answered as such
  (507), not as a crash.
"""

import hashlib
import uuid
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ServiceError
from app.models.upload import Upload
from app.repositories import uploads as uploads_repo

# What clients send for a .csv file: curl and most browsers say
# application/octet-stream, Windows browsers application/vnd.ms-excel. The
# NUL-byte check is what catches binary files.
CSV_CONTENT_TYPES = frozenset(
    {
        "text/csv",
        "text/plain",
        "text/x-csv",
        "application/csv",
        "application/vnd.ms-excel",
        "application/octet-stream",
        "",
    }
)
CHUNK_BYTES = 1024 * 1024
# "No room" as each database says it: PostgreSQL's disk_full, SQLite's SQLITE_FULL.
_DISK_FULL_SQLSTATE = "53100"
_SQLITE_FULL = 13


class UploadTooLarge(ServiceError):
    status = 413
    slug = "upload-too-large"
    title = "Upload too large"


class UnsupportedUpload(ServiceError):
    status = 415
    slug = "unsupported-upload"
    title = "Not a CSV file"


class EmptyUpload(ServiceError):
    status = 422
    slug = "empty-upload"
    title = "The uploaded file is empty"


class InsufficientStorage(ServiceError):
    """The database is full: nothing is wrong with the upload, and nothing of it was kept."""

    status = 507
    slug = "insufficient-storage"
    title = "No room to store the upload"


@dataclass(frozen=True)
class StoredFile:
    """An upload's file, all of it written (uncommitted, in the caller's transaction)."""

    size_bytes: int
    sha256: str


class IncomingFile:
    """An upload being received into `upload`'s chunks: `feed` it, `drain` it now and then,
    then `finish` it, all inside the caller's transaction.

    `upload` is a new row, added to the session with the first chunk (its
    file's size and digest are set by `finish`); rolling the transaction back
    leaves nothing of either.
    """

    def __init__(self, session: AsyncSession, upload: Upload, limit: int) -> None:
        self._session = session
        self._upload = upload
        self._limit = limit
        self._pending = bytearray()  # fed, not written yet
        self._digest = hashlib.sha256()
        self._written = 0
        self.size = 0

    @property
    def upload_id(self) -> uuid.UUID:
        return self._upload.id

    def begin(self, *, content_type: str) -> None:
        if content_type not in CSV_CONTENT_TYPES:
            raise UnsupportedUpload(f"the file is {content_type}, not CSV (text/csv)")

    def feed(self, data: bytes) -> None:
        if b"\x00" in data:
            raise UnsupportedUpload("the file holds NUL bytes: it is binary, not CSV")
        self.size += len(data)
        if self.size > self._limit:
            raise UploadTooLarge(f"the file is larger than the limit of {self._limit} bytes")
        self._pending += data

    async def drain(self) -> None:
        while len(self._pending) >= CHUNK_BYTES:
            await self._write(CHUNK_BYTES)

    async def finish(self) -> StoredFile:
        """Write what is left; EmptyUpload if there was nothing at all."""
        if self.size == 0:
            raise EmptyUpload("the file is empty")
        while self._pending:
            await self._write(CHUNK_BYTES)
        return StoredFile(self.size, self._digest.hexdigest())

    async def _write(self, most: int) -> None:
        chunk = bytes(self._pending[:most])
        del self._pending[:most]
        self._digest.update(chunk)
        try:
            if self._written == 0:
                self._session.add(self._upload)
                await self._session.flush()
            await uploads_repo.add_chunk(self._session, self.upload_id, self._written, chunk)
        except DBAPIError as exc:
            if _is_full(exc.orig):
                raise InsufficientStorage(
                    "the database has no room to store the file now; nothing was kept, "
                    "try again later"
                ) from exc
            raise
        self._written += len(chunk)


def _is_full(error: BaseException | None) -> bool:
    return (
        getattr(error, "sqlstate", None) == _DISK_FULL_SQLSTATE
        or getattr(error, "sqlite_errorcode", None) == _SQLITE_FULL
    )
