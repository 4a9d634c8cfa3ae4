"""Reading an uploaded CSV a batch at a time: split, decode, validate. Pure CPU.

The CSV import runs `read_batch` in a worker process, so parsing and
validating a large file never holds the server's event loop (or its GIL).
Everything here is a plain function of a window of the file's bytes and a
checkpoint: no database, no settings object, nothing that cannot cross a
process boundary. The import reads the file back from the database a few
chunks at a time and hands each batch the window it has.

- The csv module does the splitting (quotes, commas and newlines inside
  quotes, CRLF or LF). It is fed one physical line at a time, each decoded on
  its own, so bad UTF-8 spoils only the record it is in, and the byte offset
  after every record is known: a batch ends on a record boundary that the
  next batch (or a resumed import) starts from. A record the window cuts off
  is left for the next batch, which gets a window that holds it.
- No line, and no record, may be longer than `max_line_bytes`: memory stays
  bounded whatever the file holds (an unclosed quote, a binary blob).
- Rows are validated by the API's own field types (`app.schemas.fields`).
- Nearly every row of a real file is plain: an ASCII address, a name of
  printable ASCII, no quotes. One regular expression recognises such a line
  whole, and only the domain is asked of email-validator (once, cached); any
  other line, and any line that expression refuses, goes the way above. The
  two ways agree on every row (`tests/services/test_csv_reader.py`), and the
  plain one costs a fifth of the other.
- The valid rows leave as bytes, in the form the caller's `encode` gives
  them (the database's bulk-load format), so the server passes them on
  without touching each row.
"""

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import BinaryIO, NamedTuple

from app.schemas.fields import (
    ASCII_DOT_ATOM,
    NAME_MAX_CHARS,
    clean_email,
    clean_person_name,
    plain_address,
)

REQUIRED_COLUMNS = ("email", "name")
# How much of a rejected value errors.csv keeps: enough to recognise the row.
_KEPT_VALUE_CHARS = 1000
_BOM = "\ufeff".encode()

Rejected = tuple[int, str, str, str]  # line, email and name as read, reason


@dataclass(frozen=True)
class Window:
    """Some of a file's bytes, as read back so far."""

    data: bytes
    start: int = 0  # the offset in the file of data[0]
    at_end: bool = True  # data runs to the end of the file


class BadHeader(Exception):
    """The file's first row does not name the columns the import needs: it fails as a whole."""


@dataclass(frozen=True)
class Header:
    email_index: int
    name_index: int
    width: int
    ignored_columns: list[str]
    data_offset: int  # where the first data record starts
    data_line: int


@dataclass
class Batch:
    """What one batch of records came to, and where the next batch starts.

    Valid rows are kept once per address (the first, in file order); later
    rows of the batch with the same address are only counted, as `repeated`.
    Whether an address is registered already is for the database to say.
    """

    valid_rows: bytes = b""  # the rows kept, as `encode` wrote them
    distinct: int = 0  # how many rows valid_csv holds
    repeated: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    next_offset: int = 0
    next_line: int = 1
    finished: bool = False
    # The window ended inside a line too long to read: the rest of it, up to its
    # newline, is skipped before `next_offset` is a record boundary.
    inside_long_line: bool = False
    # The window held no whole record: read this batch again with more of the file.
    needs_more: bool = False
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def valid(self) -> int:
        return self.distinct + self.repeated

    @property
    def rows(self) -> int:
        return self.valid + len(self.rejected)


class _Record(NamedTuple):
    """One record as the csv module split it, or why it could not be split. (A tuple: a
    million of them are made per million rows.)"""

    line: int  # where it starts
    fields: list[str]
    bad_byte: tuple[int, int] | None = None  # (line, byte) of its first byte not UTF-8
    unreadable: str | None = None  # too long, or not CSV at all


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _RecordTooLong(Exception):
    pass


class _OutOfWindow(Exception):
    """The window ends before the record does (and the file goes on)."""


class _Lines:
    """The file's physical lines, decoded one by one, for csv.reader.

    Lines end at LF (a CRLF's CR stays on the line, where csv.reader expects
    it). Bytes that are not UTF-8 are kept as lone surrogates so the csv
    module still sees the commas and quotes around them, and the record they
    belong to is marked for rejection.
    """

    def __init__(
        self, file: BinaryIO, next_line: int, max_line_bytes: int, *, at_end: bool
    ) -> None:
        self._file = file
        self._at_end = at_end
        self.max_bytes = max_line_bytes
        self.line = next_line - 1  # the number of the last line handed out
        self.record_bytes = 0
        self.bad_byte: tuple[int, int] | None = None
        # After the last whole record: where the next one starts, and its line.
        self.boundary = file.tell()
        self.boundary_line = next_line
        self.finished = False  # the file's end was reached
        self.inside_long_line = False

    def mark_boundary(self) -> None:
        self.boundary = self._file.tell()
        self.boundary_line = self.line + 1

    def pass_line(self, end: int) -> None:
        """One line, read elsewhere, is a whole record that ends at `end`."""
        self.line += 1
        self.boundary, self.boundary_line = end, self.line + 1

    def resume(self) -> None:
        """Read on from the boundary (after lines passed by `pass_line`)."""
        self._file.seek(self.boundary)

    def begin_record(self) -> None:
        self.record_bytes = 0
        self.bad_byte = None

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        raw = self._file.readline(self.max_bytes + 2)  # room for the content, CR and LF
        if not raw.endswith(b"\n"):
            if len(raw) == self.max_bytes + 2:
                self.line += 1
                self._skip_rest_of_line()
                raise _RecordTooLong
            if not self._at_end:
                raise _OutOfWindow
            if not raw:
                self.finished = True
                raise StopIteration
        self.line += 1
        self.record_bytes += len(raw.rstrip(b"\r\n"))
        if self.record_bytes > self.max_bytes:
            raise _RecordTooLong
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if self.bad_byte is None:
                self.bad_byte = (self.line, raw[exc.start])
            return raw.decode("utf-8", "surrogateescape")

    def _skip_rest_of_line(self) -> None:
        while True:
            chunk = self._file.readline(64 * 1024)
            if chunk.endswith(b"\n"):
                return
            if not chunk:
                self.inside_long_line = not self._at_end
                return


def _records(lines: _Lines, until: Callable[[int], object] = lambda _: None) -> Iterator[_Record]:
    """Every record that is not blank, from the boundary of `lines`, in file order, up to
    the first record at whose offset `until` says something.

    Lazy: `lines.boundary` stands right after the last record taken, so a
    batch that stops early knows the offset to resume from. A record the
    window cuts off ends the records, unread.
    """
    lines.resume()
    reader = csv.reader(lines)
    while not lines.inside_long_line and not until(lines.boundary):
        lines.begin_record()
        line = lines.line + 1
        try:
            fields = next(reader)
        except (StopIteration, _OutOfWindow):
            return
        except _RecordTooLong:
            lines.mark_boundary()
            reader = csv.reader(lines)  # start afresh at the next line
            too_long = f"longer than {lines.max_bytes} bytes (an unclosed quote?)"
            yield _Record(line, [], unreadable=too_long)
            continue
        except csv.Error as exc:
            lines.mark_boundary()
            yield _Record(line, [], unreadable=f"not valid CSV ({exc})")
            continue
        lines.mark_boundary()
        if any(value.strip() for value in fields):
            yield _Record(line, fields, bad_byte=lines.bad_byte)


def read_header(start: Window, max_line_bytes: int) -> Header:
    """The first non-blank record, as column positions; BadHeader if it will not do.

    `start` is the file's beginning: enough of it to hold the header row.
    """
    file = io.BytesIO(start.data)
    # A byte order mark (Excel writes one) is not part of the first column's name.
    file.seek(len(_BOM) if start.data.startswith(_BOM) else 0)
    lines = _Lines(file, 1, max_line_bytes, at_end=start.at_end)
    first = next(_records(lines), None)
    if first is None and not start.at_end:
        raise BadHeader(f"no header row in the file's first {len(start.data)} bytes")
    if first is None:
        raise BadHeader("the file has no header row, only blank lines")
    if first.unreadable is not None:
        raise BadHeader(f"the header row is {first.unreadable}")
    if first.bad_byte is not None:
        raise BadHeader("the header row is not valid UTF-8; save the file as UTF-8")
    email_index, name_index = _required_positions(first.fields)
    ignored = [
        cell.strip() or f"(column {number})"
        for number, cell in enumerate(first.fields, start=1)
        if cell.strip().lower() not in REQUIRED_COLUMNS
    ]
    return Header(
        email_index=email_index,
        name_index=name_index,
        width=len(first.fields),
        ignored_columns=ignored,
        data_offset=lines.boundary,
        data_line=lines.boundary_line,
    )


def _required_positions(cells: list[str]) -> tuple[int, int]:
    """Where the email and name columns are (any case, any order); BadHeader if not once each."""
    names = [cell.strip().lower() for cell in cells]
    for column in REQUIRED_COLUMNS:
        if names.count(column) > 1:
            raise BadHeader(f"the header row names the {column} column more than once")
    missing = [column for column in REQUIRED_COLUMNS if column not in names]
    if missing:
        found = ", ".join(cell.strip() or "(blank)" for cell in cells)
        raise BadHeader(
            "the header row must name the columns email and name (any case, any order); "
            f"missing: {', '.join(missing)}; found: {found}"
        )
    return names.index("email"), names.index("name")


def read_batch(
    window: Window,
    header: Header,
    offset: int,
    next_line: int,
    *,
    max_rows: int,
    max_line_bytes: int,
    encode: Callable[[list[tuple[str, str]]], bytes],
) -> Batch:
    """Up to `max_rows` records from the checkpoint (offset 0: the start of the file), as
    many as `window` holds whole; the valid rows, (email, name), as `encode` writes them.

    Blank lines, and rows of empty cells, are skipped and not counted.
    """
    if offset == 0:
        offset, next_line = header.data_offset, header.data_line
    file = io.BytesIO(window.data)
    file.seek(offset - window.start)
    lines = _Lines(file, next_line, max_line_bytes, at_end=window.at_end)
    batch = Batch(ignored_columns=header.ignored_columns)
    plain = _PlainRows(header, window.data, max_line_bytes)
    kept = _Kept()
    count = 0
    while count < max_rows:
        row = plain.at(lines.boundary)
        if row is not None:
            email, name, end = row
            lines.pass_line(end)
            kept.add(email, name)
            count += 1
            continue
        start = lines.boundary
        for record in _records(lines, until=plain.at):  # up to the next plain row
            _take(record, header, batch, kept)
            count += 1
            if count == max_rows:
                break
        if lines.boundary == start:
            break  # the window's end, or the file's
    batch.finished = lines.finished
    batch.inside_long_line = lines.inside_long_line
    batch.next_offset, batch.next_line = window.start + lines.boundary, lines.boundary_line
    batch.needs_more = not batch.finished and batch.next_offset == offset
    batch.valid_rows, batch.distinct = encode(kept.rows), len(kept.rows)
    batch.repeated = kept.repeated
    return batch


class _Kept:
    """The valid rows a batch keeps, (email, name): the first row of each address; later
    ones are only counted."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []
        self.repeated = 0
        self._seen: set[str] = set()

    def add(self, email: str, name: str) -> None:
        if email in self._seen:
            self.repeated += 1
        else:
            self._seen.add(email)
            self.rows.append((email, name))


def _take(record: _Record, header: Header, batch: Batch, kept: _Kept) -> None:
    """A record the csv module read: kept, or rejected with the reason."""
    try:
        email, name = _validated(record, header)
    except _Rejected as exc:
        email, name = _cells(record, header)
        batch.rejected.append((record.line, _as_read(email), _as_read(name), exc.reason))
    else:
        kept.add(email, name)


# A name as the API would store it unchanged: printable ASCII without a comma or
# a quote (so the csv module reads the cell as it stands), no space at its ends.
_PLAIN_NAME_CHAR = rb"[!#-+\--~]"
_PLAIN_NAME = rb"%s(?:[ !#-+\--~]{0,%d}%s)?" % (
    _PLAIN_NAME_CHAR,
    NAME_MAX_CHARS - 2,
    _PLAIN_NAME_CHAR,
)


class _PlainRows:
    """Recognises a plain row: one line, no quotes, ASCII, its address and name ones the
    API takes as they stand (bar the address's case)."""

    def __init__(self, header: Header, data: bytes, max_line_bytes: int) -> None:
        self._match = _plain_row(header.width, header.email_index, header.name_index).match
        self._data = data
        self._max_line_bytes = max_line_bytes

    def at(self, offset: int) -> tuple[str, str, int] | None:
        """The row at `offset`: its address normalised, its name, and the offset after it;
        None if it is not plain."""
        match = self._match(self._data, offset)
        if match is None or match.start("end") - offset > self._max_line_bytes:
            return None
        local, domain, name = match.group("local", "domain", "name")
        email = plain_address(local.decode(), domain.decode())
        if email is None:
            return None
        return email, name.decode(), match.end()


@lru_cache(maxsize=64)
def _plain_row(width: int, email_index: int, name_index: int) -> re.Pattern[bytes]:
    cells = [rb'[^",\r\n]*'] * width
    cells[email_index] = rb"(?P<local>%s)@(?P<domain>[A-Za-z0-9.-]+)" % ASCII_DOT_ATOM.encode()
    cells[name_index] = rb"(?P<name>%s)" % _PLAIN_NAME
    return re.compile(b",".join(cells) + rb"(?P<end>\r?\n)")


def _validated(record: _Record, header: Header) -> tuple[str, str]:
    """The record's email and name as they will be stored; _Rejected with the reason if not."""
    if record.unreadable is not None:
        raise _Rejected(record.unreadable)
    if record.bad_byte is not None:
        bad_line, byte = record.bad_byte
        raise _Rejected(
            f"not valid UTF-8 (byte 0x{byte:02X} on line {bad_line}); save the file as UTF-8"
        )
    width = len(record.fields)
    if width != header.width:
        hint = " (a comma in an unquoted value?)" if width > header.width else ""
        raise _Rejected(f"{width} fields where the header has {header.width}{hint}")
    email, name = _cells(record, header)
    problems = []
    try:
        email = clean_email(email)
    except ValueError as exc:
        problems.append(f"email: {exc}")
    try:
        name = clean_person_name(name)
    except ValueError as exc:
        problems.append(f"name: {exc}")
    if problems:
        raise _Rejected("; ".join(problems))
    return email, name


def _cells(record: _Record, header: Header) -> tuple[str, str]:
    """The record's email and name cells as read ("" where the record is too short)."""
    fields = record.fields
    email = fields[header.email_index] if header.email_index < len(fields) else ""
    name = fields[header.name_index] if header.name_index < len(fields) else ""
    return email, name


def _as_read(value: str) -> str:
    """A cell as errors.csv shows it: undecodable bytes as U+FFFD, and not too long."""
    readable = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return readable[:_KEPT_VALUE_CHARS]
