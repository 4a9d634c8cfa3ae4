"""A multipart/form-data body read as it streams in, its file part handed on as it arrives.

FastAPI's `UploadFile` (Starlette's `request.form()`) spools the whole file to
a temporary file before the route even runs: a 10 GB body would be read to
the end before anyone could answer 413, and the file would then be copied
again. Here the raw request stream goes through python-multipart's streaming
parser (the one Starlette itself uses), and the bytes of the file part go to
a FileSink the moment they are parsed; the sink may refuse them at once.
This module is HTTP only: what the file may hold is the sink's business.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from app.core.errors import MalformedBody, ServiceError
from app.services.upload_files import UnsupportedUpload

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# A form field other than the file is a short value (a boolean, here).
_FIELD_BYTES = 1024
_FILENAME_CHARS = 255


class InvalidUpload(ServiceError):
    """A multipart body that parses, but is not the form the route takes."""

    status = 422
    slug = "invalid-upload"
    title = "Invalid upload request"


class FileSink(Protocol):
    """Where the file part's bytes go. Its methods may raise a ServiceError to refuse them."""

    def begin(self, *, content_type: str) -> None:
        """The part's headers are in: `content_type` is what the client declared."""

    def feed(self, data: bytes) -> None:
        """More of the file (kept in memory until `drain`)."""

    async def drain(self) -> None:
        """Write out what was fed, if enough has gathered."""


@dataclass(frozen=True)
class Form:
    filename: str  # the file's name as the client gave it, fit for showing
    fields: dict[str, str]  # the other fields sent, by name


def boundary(content_type: str | None, *, file_field: str) -> bytes:
    """The multipart boundary a Content-Type declares; 415 if it declares no multipart form."""
    media_type, options = parse_options_header(content_type)
    found = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not found:
        raise UnsupportedUpload(f"send the CSV as multipart/form-data, in the field `{file_field}`")
    return found


async def read_form(
    body: AsyncIterator[bytes],
    *,
    boundary: bytes,
    file_field: str,
    other_fields: frozenset[str],
    sink: FileSink,
) -> Form:
    """Parse the body to its end, the file part into `sink`; 400 or 422 if it will not do."""
    parts = _Parts(file_field, other_fields, sink)
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        async for chunk in body:
            parser.write(chunk)
            await sink.drain()
        parser.finalize()
    except FormParserError as exc:
        raise MalformedBody(f"the multipart body is malformed ({exc})") from None
    except ClientDisconnect:
        raise MalformedBody("the client disconnected before the upload was complete") from None
    if not parts.ended:
        raise MalformedBody("the multipart body ended before its closing boundary")
    if parts.filename is None:
        raise InvalidUpload(
            f"no `{file_field}` field: send the CSV as multipart/form-data field `{file_field}`"
        )
    fields = {name: bytes(value).decode("utf-8", "replace") for name, value in parts.fields.items()}
    return Form(filename=parts.filename, fields=fields)


class _Parts:
    """python-multipart callbacks: which part we are in, and what the parts held."""

    def __init__(self, file_field: str, other_fields: frozenset[str], sink: FileSink) -> None:
        self._file_field = file_field
        self._other_fields = other_fields
        self._sink = sink
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._current: str | None = None
        self.filename: str | None = None  # set once the file part has begun
        self.fields: dict[str, bytearray] = {}
        self.ended = False

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
        if name == self._file_field:
            if self.filename is not None:
                raise InvalidUpload("send one file per upload")
            self.filename = _as_data(options.get(b"filename", b""))
            declared, _ = parse_options_header(self._headers.get(b"content-type"))
            self._sink.begin(content_type=declared.decode("latin-1"))
        elif name in self._other_fields:
            if name in self.fields:
                raise InvalidUpload(f"send {name} once")
            self.fields[name] = bytearray()
        else:
            allowed = " and, optionally, ".join(
                f"`{field}`" for field in (self._file_field, *sorted(self._other_fields))
            )
            raise InvalidUpload(f"unexpected form field {name!r}: send {allowed}")
        self._current = name

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current == self._file_field:
            self._sink.feed(data[start:end])
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
