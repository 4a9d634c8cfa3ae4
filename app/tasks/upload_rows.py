"""Reading a stored CSV upload a batch at a time: split, decode, validate. Pure CPU.

The ingestion task runs `read_batch` in a worker process, so parsing and
validating a large file never holds the server's event loop (or its GIL).
Everything here is a plain function of the file and a checkpoint: no
database, no settings object, nothing that cannot cross a process boundary.

- The csv module does the splitting (quotes, commas and newlines inside
  quotes, CRLF or LF). It is fed one physical line at a time, each decoded on
  its own, so bad UTF-8 spoils only the record it is in, and the byte offset
  after every record is known: a batch ends on a record boundary that the
  next batch (or a resumed import) starts from.
- No line, and no record, may be longer than `max_line_bytes`: memory stays
  bounded whatever the file holds (an unclosed quote, a binary blob).
- Rows are validated by the API's own field types (`app.schemas.fields`).
"""

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from app.schemas.fields import clean_email, clean_person_name

REQUIRED_COLUMNS = ("email", "name")
# How much of a rejected value errors.csv keeps: enough to recognise the row.
_KEPT_VALUE_CHARS = 1000
_BOM = "\ufeff".encode()


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

    valid: list[tuple[int, str, str]] = field(default_factory=list)  # line, email, name
    repeated: int = 0
    rejected: list[tuple[int, str, str, str]] = field(default_factory=list)  # ... and reason
    next_offset: int = 0
    next_line: int = 1
    finished: bool = False
    ignored_columns: list[str] = field(default_factory=list)
    # With for_copy=True: `valid` as CSV (line,email,name), as PostgreSQL's COPY
    # reads it, and `valid` itself left empty: the server sends bytes, and
    # spends no time per row.
    valid_csv: bytes = b""
    distinct: int = 0

    @property
    def valid_rows(self) -> int:
        return self.distinct + self.repeated

    @property
    def rows(self) -> int:
        return self.valid_rows + len(self.rejected)


class _RecordTooLong(Exception):
    pass


class _Lines:
    """The file's physical lines, decoded one by one, for csv.reader.

    Lines end at LF (a CRLF's CR stays on the line, where csv.reader expects
    it). Bytes that are not UTF-8 are kept as lone surrogates so the csv
    module still sees the commas and quotes around them, and the record they
    belong to is marked for rejection.
    """

    def __init__(self, file: BinaryIO, next_line: int, max_line_bytes: int) -> None:
        self._file = file
        self._max = max_line_bytes
        self.line = next_line - 1  # the number of the last line handed out
        self.record_bytes = 0
        self.bad_byte: tuple[int, int] | None = None  # (line, byte) of the first bad byte

    def begin_record(self) -> None:
        self.record_bytes = 0
        self.bad_byte = None

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        raw = self._file.readline(self._max + 2)  # room for the content, CR and LF
        if not raw:
            raise StopIteration
        self.line += 1
        if not raw.endswith(b"\n") and len(raw) == self._max + 2:
            self._skip_rest_of_line()
            raise _RecordTooLong
        self.record_bytes += len(raw.rstrip(b"\r\n"))
        if self.record_bytes > self._max:
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
            if not chunk or chunk.endswith(b"\n"):
                return


def read_header(file: BinaryIO, max_line_bytes: int) -> Header:
    """The first non-blank record, as column positions; BadHeader if it will not do."""
    # A byte order mark (Excel writes one) is not part of the first column's name.
    file.seek(len(_BOM) if file.read(len(_BOM)) == _BOM else 0)
    lines = _Lines(file, 1, max_line_bytes)
    reader = csv.reader(lines)
    while True:
        lines.begin_record()
        try:
            cells = next(reader)
        except StopIteration:
            raise BadHeader("the file has no header row, only blank lines") from None
        except _RecordTooLong:
            raise BadHeader(f"the header row is longer than {max_line_bytes} bytes") from None
        except csv.Error as exc:
            raise BadHeader(f"the header row is not valid CSV ({exc})") from None
        if lines.bad_byte is not None:
            raise BadHeader("the header row is not valid UTF-8; save the file as UTF-8")
        if any(cell.strip() for cell in cells):
            break
    names = [cell.strip().lower() for cell in cells]
    positions: dict[str, int] = {}
    for column in REQUIRED_COLUMNS:
        if names.count(column) > 1:
            raise BadHeader(f"the header row names the {column} column more than once")
        if column in names:
            positions[column] = names.index(column)
    missing = [column for column in REQUIRED_COLUMNS if column not in positions]
    if missing:
        found = ", ".join(cell.strip() or "(blank)" for cell in cells)
        raise BadHeader(
            "the header row must name the columns email and name (any case, any order); "
            f"missing: {', '.join(missing)}; found: {found}"
        )
    ignored = [
        cell.strip() or f"(column {number})"
        for number, (cell, name) in enumerate(zip(cells, names, strict=True), start=1)
        if name not in REQUIRED_COLUMNS
    ]
    return Header(
        email_index=positions["email"],
        name_index=positions["name"],
        width=len(cells),
        ignored_columns=ignored,
        data_offset=file.tell(),
        data_line=lines.line + 1,
    )


def read_batch(
    path: str | Path,
    offset: int,
    next_line: int,
    *,
    max_rows: int,
    max_line_bytes: int,
    for_copy: bool = False,
) -> Batch:
    """Up to `max_rows` records from the checkpoint (offset 0: the start of the file).

    Blank lines, and rows of empty cells, are skipped and not counted.
    Raises BadHeader if the header row will not do.
    """
    with Path(path).open("rb") as file:
        header = read_header(file, max_line_bytes)
        if offset == 0:
            offset, next_line = header.data_offset, header.data_line
        file.seek(offset)
        lines = _Lines(file, next_line, max_line_bytes)
        reader = csv.reader(lines)
        batch = Batch(ignored_columns=header.ignored_columns)
        seen: set[str] = set()
        records = 0
        while records < max_rows:
            lines.begin_record()
            line = lines.line + 1
            try:
                fields = next(reader)
            except StopIteration:
                batch.finished = True
                break
            except _RecordTooLong:
                records += 1
                reader = csv.reader(lines)  # start afresh at the next line
                reason = f"longer than {max_line_bytes} bytes (an unclosed quote?)"
                batch.rejected.append((line, "", "", reason))
                continue
            except csv.Error as exc:
                records += 1
                batch.rejected.append((line, "", "", f"not valid CSV ({exc})"))
                continue
            if not any(value.strip() for value in fields):
                continue
            records += 1
            valid = _check(fields, line, lines.bad_byte, header, batch)
            if valid is None:
                continue
            if valid[1] in seen:
                batch.repeated += 1
            else:
                seen.add(valid[1])
                batch.valid.append(valid)
        batch.next_offset = file.tell()
        batch.next_line = lines.line + 1
    batch.distinct = len(batch.valid)
    if for_copy:
        batch.valid_csv, batch.valid = _as_csv(batch.valid), []
    return batch


def _as_csv(rows: list[tuple[int, str, str]]) -> bytes:
    # Python's csv dialect and PostgreSQL's CSV format quote alike ("" inside
    # quotes); no value is empty (that would read as NULL) and no line is just
    # "\." (every line starts with its number).
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def _check(
    fields: list[str], line: int, bad_byte: tuple[int, int] | None, header: Header, batch: Batch
) -> tuple[int, str, str] | None:
    """Validate one record like a signup: the row as it will be stored, or None (rejected)."""
    email = fields[header.email_index] if header.email_index < len(fields) else ""
    name = fields[header.name_index] if header.name_index < len(fields) else ""
    if bad_byte is not None:
        bad_line, byte = bad_byte
        reason = f"not valid UTF-8 (byte 0x{byte:02X} on line {bad_line}); save the file as UTF-8"
        batch.rejected.append((line, _shown(email), _shown(name), reason))
        return None
    if len(fields) != header.width:
        reason = f"{len(fields)} fields where the header has {header.width}"
        if len(fields) > header.width:
            reason += " (a comma in an unquoted value?)"
        batch.rejected.append((line, _shown(email), _shown(name), reason))
        return None
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
        raw_email, raw_name = fields[header.email_index], fields[header.name_index]
        batch.rejected.append((line, _shown(raw_email), _shown(raw_name), "; ".join(problems)))
        return None
    return line, email, name


def _shown(value: str) -> str:
    """A value as errors.csv shows it: undecodable bytes as U+FFFD, and not too long."""
    readable = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return readable[:_KEPT_VALUE_CHARS]
