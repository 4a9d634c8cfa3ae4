"""Receiving an upload: the multipart body streamed into DATA_DIR/uploads, under a new name.

FastAPI's `UploadFile` (Starlette's `request.form()`) spools the whole file to
a temporary file before the route even runs: a 10 GB body would be read to
the end before anyone could answer 413, and the file would then be copied
again. Here the raw request stream goes through python-multipart's streaming
parser (the one Starlette itself uses), and the file part is written straight
to its final folder as it arrives:

- under a name the service generates (`<uuid>.csv`); the client's filename is
  kept as data only, never joined to a path;
- refused the moment it passes UPLOAD_MAX_BYTES (413), holds a NUL byte
  (415: binary, not CSV), or declares a content type that is not CSV (415);
- hashed (sha256) and counted on the way; written and hashed in a thread, in
  1 MiB pieces, so a slow disk never stalls the event loop;
- fsynced and renamed into place only once complete: the upload row that
  points at it is committed after that. On any failure the partial file is
  removed.
"""

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from app.core.config import Settings
from app.core.errors import (
    EmptyUpload,
    InvalidUpload,
    MalformedBody,
    UnsupportedUpload,
    UploadTooLarge,
)

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

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
# Room in a request, beyond the file itself, for boundaries, part headers and fields.
_ENVELOPE_BYTES = 64 * 1024


def max_request_bytes(settings: Settings) -> int:
    """The largest upload request: the largest file, and room around it."""
    return settings.upload_max_bytes + _ENVELOPE_BYTES


_FIELD_BYTES = 1024
_FILENAME_CHARS = 255


@dataclass(frozen=True)
class ReceivedFile:
    """A complete upload on disk, and what the request said about it."""

    upload_id: uuid.UUID
    path: Path
    filename: str
    size_bytes: int
    sha256: str
    send_welcome: bool

    @property
    def stored_name(self) -> str:
        return self.path.name

    async def discard(self) -> None:
        await asyncio.to_thread(self.path.unlink, missing_ok=True)


async def receive(
    body: AsyncIterator[bytes],
    *,
    content_type: str | None,
    content_length: str | None,
    settings: Settings,
) -> ReceivedFile:
    """Stream the `file` field to disk; raise a ServiceError (leaving nothing) if it will not do."""
    media_type, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise UnsupportedUpload("send the CSV as multipart/form-data, in the field `file`")
    limit = settings.upload_max_bytes
    declared_length = int(content_length) if content_length and content_length.isdigit() else 0
    if declared_length > max_request_bytes(settings):
        # Said up front: refuse before reading a byte of it.
        raise UploadTooLarge(f"the file is larger than the limit of {limit} bytes")

    upload_id = uuid.uuid4()
    folder = settings.uploads_dir
    final = folder / f"{upload_id}.csv"
    partial = folder / f"{upload_id}.csv.part"
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    parts = _Parts(limit)
    file = await asyncio.to_thread(partial.open, "xb")
    sink = _Sink(file)
    try:
        try:
            parser = MultipartParser(boundary, parts.callbacks())
            async for chunk in body:
                parser.write(chunk)
                if len(parts.pending) >= _WRITE_BYTES:
                    await asyncio.to_thread(sink.write, parts.take())
            parser.finalize()
        except FormParserError as exc:
            raise MalformedBody(f"the multipart body is malformed ({exc})") from None
        except ClientDisconnect:
            raise MalformedBody("the client disconnected before the upload was complete") from None
        if not parts.ended:
            raise MalformedBody("the multipart body ended before its closing boundary")
        if not parts.file_seen:
            raise InvalidUpload("no `file` field: send the CSV as multipart/form-data field `file`")
        if parts.size == 0:
            raise EmptyUpload("the file is empty")
        send_welcome = _boolean(parts.fields.get("send_welcome"))
        await asyncio.to_thread(sink.write, parts.take())
        await asyncio.to_thread(sink.finish, partial, final)
    except BaseException:
        await asyncio.to_thread(sink.abandon, partial)
        raise
    return ReceivedFile(
        upload_id=upload_id,
        path=final,
        filename=parts.filename,
        size_bytes=parts.size,
        sha256=sink.digest.hexdigest(),
        send_welcome=send_welcome,
    )


class _Sink:
    """The file being written, and its running hash. Blocking: called in a thread."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self._file.write(data)

    def finish(self, partial: Path, final: Path) -> None:
        """Durable before it is visible: the row that points at it commits after this."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        partial.rename(final)
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def abandon(self, partial: Path) -> None:
        self._file.close()
        partial.unlink(missing_ok=True)


class _Parts:
    """python-multipart callbacks: which part we are in, and what the parts held."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._current: str | None = None
        self.pending = bytearray()  # file bytes parsed but not written yet
        self.size = 0
        self.file_seen = False
        self.filename = ""
        self.fields: dict[str, bytearray] = {}
        self.ended = False

    def take(self) -> bytes:
        data = bytes(self.pending)
        self.pending.clear()
        return data

    def callbacks(self) -> "MultipartCallbacks":
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == "file":
            if self.file_seen:
                raise InvalidUpload("send one file per upload")
            self.file_seen = True
            declared, _ = parse_options_header(self._headers.get(b"content-type"))
            if declared.decode("latin-1") not in CSV_CONTENT_TYPES:
                raise UnsupportedUpload(
                    f"the file is {declared.decode('latin-1')}, not CSV (text/csv)"
                )
            self.filename = _as_data(options.get(b"filename", b""))
        elif name == "send_welcome":
            if name in self.fields:
                raise InvalidUpload("send send_welcome once")
            self.fields[name] = bytearray()
        else:
            raise InvalidUpload(
                f"unexpected form field {name!r}: send `file` and, optionally, `send_welcome`"
            )
        self._current = name

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current == "file":
            if data.find(b"\x00", start, end) != -1:
                raise UnsupportedUpload("the file holds NUL bytes: it is binary, not CSV")
            self.size += end - start
            if self.size > self._limit:
                raise UploadTooLarge(f"the file is larger than the limit of {self._limit} bytes")
            self.pending += data[start:end]
        elif self._current is not None:
            value = self.fields[self._current]
            value += data[start:end]
            if len(value) > _FIELD_BYTES:
                raise InvalidUpload(f"the field {self._current!r} is too long")

    def _on_part_end(self) -> None:
        self._current = None

    def _on_end(self) -> None:
        self.ended = True


def _as_data(raw: bytes) -> str:
    """The client's filename, fit for showing: no control characters, not too long."""
    name = raw.decode("utf-8", "replace")
    return "".join(char for char in name if char.isprintable())[:_FILENAME_CHARS]


def _boolean(raw: bytearray | None) -> bool:
    """A form field the schema types as boolean: `true` or `false`, as a form sends them."""
    if raw is None:
        return True
    value = raw.decode("utf-8", "replace").strip().lower()
    if value in ("true", "false"):
        return value == "true"
    raise InvalidUpload(f"send_welcome must be true or false, not {value[:20]!r}")
