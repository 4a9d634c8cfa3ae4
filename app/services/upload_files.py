"""Where an upload's bytes are kept: DATA_DIR/uploads/<uuid>.csv, written as they arrive.

- Under a name the service generates; the client's filename is kept as data
  only, never joined to a path.
- Refused the moment it passes UPLOAD_MAX_BYTES (413), holds a NUL byte (415:
  binary, not CSV), or was declared with a content type that is not CSV (415).
- Hashed (sha256) and counted on the way; written and hashed in a thread, in
  1 MiB pieces, so a slow disk never stalls the event loop.
- Fsynced and renamed into place only once complete: the upload row that
  points at it is committed after that. On any failure the partial file is
  removed, and a full disk is answered as such (507), not as a crash.
"""

import asyncio
import errno
import hashlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from app.core.config import Settings
from app.core.errors import ServiceError

T = TypeVar("T")

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
_WRITE_BYTES = 1024 * 1024
# The disk errors that mean "no room": the client may try again later.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})


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
    """The disk is full: nothing is wrong with the upload, and nothing of it was kept."""

    status = 507
    slug = "insufficient-storage"
    title = "No room to store the upload"


def stored_path(settings: Settings, stored_name: str) -> Path:
    """Where the upload stored under `stored_name` is."""
    return (settings.uploads_dir / stored_name).resolve()


@dataclass(frozen=True)
class StoredFile:
    """A complete upload on disk, durable, under its generated name."""

    upload_id: uuid.UUID
    path: Path
    size_bytes: int
    sha256: str

    @property
    def stored_name(self) -> str:
        return self.path.name

    async def discard(self) -> None:
        await asyncio.to_thread(self.path.unlink, missing_ok=True)


class IncomingFile:
    """An upload being received: `feed` it, `drain` it now and then, then `keep` or `discard`.

    Open it with `async with IncomingFile.open(settings) as incoming:`; leaving
    the block without `keep` removes the partial file, whatever happened.
    """

    def __init__(self, upload_id: uuid.UUID, partial: Path, file: BinaryIO, limit: int) -> None:
        self.upload_id = upload_id
        self._partial = partial
        self._final = partial.with_suffix("")
        self._file = file
        self._limit = limit
        self._pending = bytearray()  # fed, not written yet
        self._digest = hashlib.sha256()
        self.size = 0
        self._kept = False

    @classmethod
    async def open(cls, settings: Settings) -> "IncomingFile":
        upload_id = uuid.uuid4()
        folder = settings.uploads_dir
        partial = folder / f"{upload_id}.csv.part"
        await _on_disk(folder.mkdir, parents=True, exist_ok=True)
        file = await _on_disk(_create, partial)
        return cls(upload_id, partial, file, settings.upload_max_bytes)

    async def __aenter__(self) -> "IncomingFile":
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._kept:
            await asyncio.to_thread(self._abandon)

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
        if len(self._pending) >= _WRITE_BYTES:
            await _on_disk(self._write, self._take())

    async def keep(self) -> StoredFile:
        """Make the file durable and visible under its final name; EmptyUpload if it is empty."""
        if self.size == 0:
            raise EmptyUpload("the file is empty")
        await _on_disk(self._write, self._take())
        await _on_disk(self._finish)
        self._kept = True
        return StoredFile(self.upload_id, self._final, self.size, self._digest.hexdigest())

    def _take(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data

    # Blocking: run in a thread.
    def _write(self, data: bytes) -> None:
        self._digest.update(data)
        self._file.write(data)

    def _finish(self) -> None:
        """Durable before it is visible: the row that points at it commits after this."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._partial.rename(self._final)
        directory = os.open(self._final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _abandon(self) -> None:
        self._file.close()
        self._partial.unlink(missing_ok=True)
        self._final.unlink(missing_ok=True)  # renamed, but not made durable


def _create(path: Path) -> BinaryIO:
    return path.open("xb")


async def _on_disk(work: Callable[..., T], *args: object, **kwargs: object) -> T:
    """`work` in a thread; a full disk becomes InsufficientStorage (507)."""
    try:
        return await asyncio.to_thread(work, *args, **kwargs)
    except OSError as exc:
        if exc.errno in _NO_ROOM:
            raise InsufficientStorage(
                "the server has no room to store the file now; nothing was kept, try again later"
            ) from exc
        raise
