"""Parsing and validating a CSV upload, batch by batch, window by window (no database)."""

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.schemas.fields import clean_email, clean_person_name
from app.services.csv_reader import BadHeader, Batch, Window, read_batch, read_header

MAX_LINE = 200


def stored(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "upload.csv"
    path.write_bytes(content)
    return path


Row = tuple[str, str]


def as_json(rows: list[Row]) -> bytes:
    """The tests' own encoding of the rows a batch keeps (the import's is the database's)."""
    return json.dumps(rows).encode()


def kept(batch: Batch) -> list[Row]:
    """The rows a batch keeps (email, name), read back from what it hands on."""
    return [(email, name) for email, name in json.loads(batch.valid_rows or b"[]")]


@dataclass
class Merged:
    """Every batch of a file read from the start, as the CSV import would read them."""

    kept: list[Row] = field(default_factory=list)
    repeated: int = 0
    rejected: list[tuple[int, str, str, str]] = field(default_factory=list)
    valid: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    next_offset: int = 0


def window_of(content: bytes, offset: int, size: int) -> Window:
    data = content[offset : offset + size]
    return Window(data, offset, at_end=offset + len(data) >= len(content))


def one_batch(path: Path, offset: int, line: int, *, max_rows: int) -> Batch:
    """A batch with all of the file in its window."""
    content = path.read_bytes()
    header = read_header(window_of(content, 0, len(content)), MAX_LINE)
    whole = window_of(content, 0, len(content))
    return read_batch(
        whole, header, offset, line, max_rows=max_rows, max_line_bytes=MAX_LINE, encode=as_json
    )


def read_all(
    path: Path,
    batch_rows: int = 1000,
    max_line_bytes: int = MAX_LINE,
    window_bytes: int = 1 << 20,
) -> Merged:
    """As the CSV import reads: windows of `window_bytes`, widened while a record does not
    fit, and the rest of a line too long to read skipped up to its newline."""
    content = path.read_bytes()
    header = read_header(window_of(content, 0, 1 << 20), max_line_bytes)
    merged = Merged()
    offset, line = 0, 1
    while True:
        size = window_bytes
        batch = Batch(needs_more=True)
        while batch.needs_more:
            window = window_of(content, offset, size)
            batch = read_batch(
                window,
                header,
                offset,
                line,
                max_rows=batch_rows,
                max_line_bytes=max_line_bytes,
                encode=as_json,
            )
            size *= 2
        if batch.inside_long_line:
            newline = content.find(b"\n", batch.next_offset)
            batch.next_offset = newline + 1 if newline >= 0 else len(content)
            batch.finished = batch.next_offset >= len(content)
        merged.kept += kept(batch)
        merged.valid += batch.valid
        merged.repeated += batch.repeated
        merged.rejected += batch.rejected
        merged.ignored_columns = batch.ignored_columns
        offset, line = batch.next_offset, batch.next_line
        if batch.finished:
            merged.next_offset = offset
            return merged


def csv_file(rows: list[Row], line_end: str) -> bytes:
    """A file with the header `email,name` and `rows`, quoted by the csv module as needed."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=line_end)
    writer.writerow(["email", "name"])
    writer.writerows(rows)
    return buffer.getvalue().encode()


def first_of_each_address(rows: list[Row]) -> list[Row]:
    """Each batch keeps an address once; across batches, the database does."""
    first_seen: dict[str, Row] = {}
    for row in rows:
        first_seen.setdefault(row[0], row)
    return list(first_seen.values())


def reasons(batch: Batch | Merged) -> dict[int, str]:
    return {line: reason for line, _email, _name, reason in batch.rejected}


@pytest.mark.parametrize(
    ("header", "complaint"),
    [
        (b"emial,name", "missing: email; found: emial, name"),
        (b"email,nmae", "missing: name; found: email, nmae"),
        (b"email", "missing: name; found: email"),
        (b"ada@example.com,Ada", "missing: email, name; found: ada@example.com, Ada"),
        (b"email,name,EMAIL", "names the email column more than once"),
        (b"e\xe9mail,name", "not valid UTF-8"),
        (b"email,name," + b"x" * MAX_LINE, f"longer than {MAX_LINE} bytes"),
    ],
)
def test_a_header_without_email_and_name_columns_fails_the_file_with_a_clear_reason(
    tmp_path: Path, header: bytes, complaint: str
) -> None:
    path = stored(tmp_path, header + b"\nada@example.com,Ada\n")

    with pytest.raises(BadHeader, match=complaint.replace("(", r"\(")):
        read_all(path)


def test_a_file_of_blank_lines_has_no_header(tmp_path: Path) -> None:
    with pytest.raises(BadHeader, match="no header row, only blank lines"):
        read_all(stored(tmp_path, b"\n\r\n  \n"))


def test_header_is_case_insensitive_in_any_order_and_extra_columns_are_reported_once(
    tmp_path: Path,
) -> None:
    path = stored(
        tmp_path,
        b" Name ,Company,EMAIL,,notes\nAda,Analytical,ada@example.com,,x\nBob,,bob@example.com,,\n",
    )

    batch = read_all(path)

    assert batch.kept == [("ada@example.com", "Ada"), ("bob@example.com", "Bob")]
    assert batch.ignored_columns == ["Company", "(column 4)", "notes"]


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = stored(tmp_path, "\ufeffemail,name\nada@example.com,Ada\n".encode())

    assert read_all(path).kept == [("ada@example.com", "Ada")]


def test_crlf_and_lf_line_ends_and_a_missing_final_newline_read_alike(tmp_path: Path) -> None:
    rows = ["email,name", "ada@example.com,Ada", "bob@example.com,Bob"]
    lf = read_all(stored(tmp_path, "\n".join(rows).encode() + b"\n"))
    crlf = read_all(stored(tmp_path, "\r\n".join(rows).encode() + b"\r\n"))
    unterminated = read_all(stored(tmp_path, "\r\n".join(rows).encode()))

    assert lf.kept == crlf.kept == unterminated.kept
    assert lf.kept == [("ada@example.com", "Ada"), ("bob@example.com", "Bob")]


def test_quoted_fields_keep_commas_and_newlines_and_line_numbers_stay_physical(
    tmp_path: Path,
) -> None:
    path = stored(
        tmp_path,
        b'email,name,notes\n"ada@example.com","Lovelace, Ada","first\r\nprogrammer"\n'
        b'bob@example.com,"Bob\nthe Builder",\n'
        b'carol@example.com,Carol,"say ""hi"""\n',
    )

    batch = read_all(path)

    assert batch.kept == [
        ("ada@example.com", "Lovelace, Ada"),
        ("carol@example.com", "Carol"),
    ]
    # A newline inside a name is read correctly, then refused like a signup's.
    assert reasons(batch) == {4: "name: must not contain control characters or line breaks"}


def test_latin_1_bytes_reject_their_row_with_its_line_number_and_the_rest_goes_on(
    tmp_path: Path,
) -> None:
    path = stored(
        tmp_path,
        b"email,name\nada@example.com,Ada\n"
        + "zoe@example.com,Zoé\n".encode("latin-1")
        + b"bob@example.com,Bob\n",
    )

    batch = read_all(path)

    assert batch.kept == [("ada@example.com", "Ada"), ("bob@example.com", "Bob")]
    [(line, email, name, reason)] = batch.rejected
    assert (line, email, name) == (3, "zoe@example.com", "Zo\ufffd")
    assert reason == "not valid UTF-8 (byte 0xE9 on line 3); save the file as UTF-8"


@pytest.mark.parametrize("window_bytes", [1 << 20, 3 * MAX_LINE, 7])
def test_a_line_over_the_limit_is_rejected_unread_and_the_rest_goes_on(
    tmp_path: Path, window_bytes: int
) -> None:
    path = stored(
        tmp_path,
        b"email,name\n"
        + b"long@example.com," + b"x" * 10 * MAX_LINE + b"\n"
        + b"ada@example.com,Ada\n",
    )  # fmt: skip

    batch = read_all(path, window_bytes=window_bytes)

    assert reasons(batch) == {2: f"longer than {MAX_LINE} bytes (an unclosed quote?)"}
    assert batch.kept == [("ada@example.com", "Ada")]


@pytest.mark.parametrize("window_bytes", [1 << 20, 50])
def test_an_unclosed_quote_swallows_at_most_the_line_limit(
    tmp_path: Path, window_bytes: int
) -> None:
    rows = b"".join(b"user%d@example.com,User %d\n" % (n, n) for n in range(20))
    path = stored(tmp_path, b'email,name\nada@example.com,"Ada\n' + rows)

    batch = read_all(path, window_bytes=window_bytes)

    assert list(reasons(batch)) == [2]
    assert len(batch.kept) > 10  # the rows after the swallowed ones are read again
    assert batch.kept[-1] == ("user19@example.com", "User 19")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (b"ada@example.com", "1 fields where the header has 2"),
        (b"ada@example.com,Lovelace, Ada", "3 fields where the header has 2 (a comma in an"),
        (b"not-an-email,Ada", "email: An email address must have an @-sign."),
        (b"ada@localhost,Ada", "email: The part after the @-sign is not valid. It should have"),
        (b"ada@example.com," + b"x" * 101, "name: String should have at most 100 characters"),
        (b"ada@example.com,Bell\x07", "name: must not contain control characters"),
        (b"ada@example.com,  ", "name: must not be blank"),
        (b"Ada <ada@example.com>,Ada", "email: A display name and angle brackets"),
    ],
)
def test_rows_are_validated_like_signups_and_rejected_with_the_reason(
    tmp_path: Path, row: bytes, reason: str
) -> None:
    path = stored(tmp_path, b"email,name\n" + row + b"\nbob@example.com,Bob\n")

    batch = read_all(path)

    assert list(reasons(batch)) == [2]
    assert reasons(batch)[2].startswith(reason)
    assert batch.kept == [("bob@example.com", "Bob")]


def test_case_variants_are_one_address_kept_once_and_counted_again(tmp_path: Path) -> None:
    path = stored(tmp_path, b"email,name\n Ada@Example.COM ,Ada\nada@example.com,Ada again\n")

    batch = read_all(path)

    assert batch.kept == [("ada@example.com", "Ada")]
    assert batch.repeated == 1


def test_blank_lines_and_rows_of_empty_cells_are_skipped_uncounted(tmp_path: Path) -> None:
    path = stored(
        tmp_path, b"email,name\n\nada@example.com,Ada\n,\n \n\r\nbob@example.com,Bob\n,,\n"
    )

    batch = read_all(path)

    assert batch.kept == [("ada@example.com", "Ada"), ("bob@example.com", "Bob")]
    assert batch.rejected == []


def test_a_header_only_file_is_finished_with_no_rows(tmp_path: Path) -> None:
    batch = read_all(stored(tmp_path, b"email,name\r\n"))

    assert (batch.kept, batch.rejected, batch.valid) == ([], [], 0)


def test_a_batch_ends_on_a_record_boundary_the_next_batch_starts_from(tmp_path: Path) -> None:
    path = stored(tmp_path, b'email,name\na@example.com,"A\nB"\nb@example.com,B\nc@example.com,C\n')

    first = one_batch(path, 0, 1, max_rows=1)
    second = one_batch(path, first.next_offset, first.next_line, max_rows=1)

    assert (first.next_line, first.finished) == (4, False)
    assert path.read_bytes()[first.next_offset :].startswith(b"b@example.com")
    assert kept(second) == [("b@example.com", "B")]


cells = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
# A few addresses in several spellings, so batches meet the same person again.
addresses = st.sampled_from(["ada@example.com", "ADA@Example.com", " bob@example.org ", "c@d.io"])
names = st.sampled_from(["Ada", "Lovelace, Ada", 'Say "hi"', "Zoë", "Two\nLines"])


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.one_of(addresses, addresses, cells), st.one_of(names, names, cells)),
        max_size=30,
    ),
    batch_rows=st.integers(min_value=1, max_value=7),
    window_bytes=st.integers(min_value=1, max_value=80),
    line_end=st.sampled_from(["\n", "\r\n"]),
)
def test_reading_in_batches_and_windows_gives_what_one_pass_gives(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[str, str]],
    batch_rows: int,
    window_bytes: int,
    line_end: str,
) -> None:
    path = stored(tmp_path_factory.mktemp("rows"), csv_file(rows, line_end))

    in_batches = read_all(path, batch_rows=batch_rows, window_bytes=window_bytes)
    at_once = read_all(path, batch_rows=10_000)

    assert first_of_each_address(in_batches.kept) == at_once.kept
    assert in_batches.valid == at_once.valid
    assert in_batches.rejected == at_once.rejected
    assert in_batches.next_offset == path.stat().st_size


def read_one_by_one(content: bytes) -> tuple[list[Row], list[int]]:
    """What the import must come to, the slow and obvious way: the csv module over the
    whole text, each record validated by the API's own field rules. (For files whose
    records are one line each.)"""
    kept: list[Row] = []
    rejected: list[int] = []
    seen: set[str] = set()
    records = list(csv.reader(io.StringIO(content.decode(), newline="")))
    for line, fields in enumerate(records[1:], start=2):
        if not any(value.strip() for value in fields):
            continue
        try:
            if len(fields) != 2:
                raise ValueError("width")
            email, name = clean_email(fields[0]), clean_person_name(fields[1])
        except ValueError:
            rejected.append(line)
            continue
        if email not in seen:
            seen.add(email)
            kept.append((email, name))
    return kept, rejected


ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
# Domains the plain way takes, and ones email-validator refuses or must normalise.
DOMAINS = [
    "example.com",
    "Example.ORG",
    "localhost",
    "-x.com",
    "a..b.com",
    "ex_ample.com",
    "xn--bcher-kva.example",
    "münchen.de",
    "b" * 64 + ".com",
    "c" * 63 + "." + "d" * 63 + "." + "e" * 63 + "." + "f" * 57 + ".com",
]
plain_looking = st.tuples(
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        st.text(alphabet=ATEXT + ".", min_size=1, max_size=70),
        st.sampled_from(DOMAINS),
    ),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=102)
    | st.sampled_from(["Zoë", " Ada", "Ada ", "Tab\there", "x" * 100, "x" * 101]),
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(plain_looking, max_size=40),
    line_end=st.sampled_from(["\n", "\r\n"]),
    batch_rows=st.integers(min_value=1, max_value=50),
)
def test_plain_rows_and_all_others_come_out_as_one_record_at_a_time_would(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[Row],
    line_end: str,
    batch_rows: int,
) -> None:
    content = csv_file(rows, line_end)
    path = stored(tmp_path_factory.mktemp("plain"), content)

    read = read_all(path, batch_rows=batch_rows, max_line_bytes=1000)

    kept, rejected = read_one_by_one(content)
    assert first_of_each_address(read.kept) == kept
    assert list(reasons(read)) == rejected


def test_a_plain_row_longer_than_the_line_limit_is_rejected_as_too_long(
    tmp_path: Path,
) -> None:
    address = "a" * 60 + "@" + "b" * 63 + ".com"
    long_row = f"{address},{'N' * 100}".encode()
    assert len(long_row) > MAX_LINE
    path = stored(tmp_path, b"email,name\n" + long_row + b"\nada@example.com,Ada\n")

    batch = read_all(path)

    assert reasons(batch) == {2: f"longer than {MAX_LINE} bytes (an unclosed quote?)"}
    assert batch.kept == [("ada@example.com", "Ada")]


def test_the_kept_rows_are_handed_to_encode_unquoted_and_a_repeat_only_counted(
    tmp_path: Path,
) -> None:
    path = stored(
        tmp_path,
        b'email,name\nada@example.com,"Lovelace, Ada"\nbob@example.com,"Bob ""the"" Builder"\n'
        b"ADA@example.com,Again\nbad,Eve\n",
    )

    batch = one_batch(path, 0, 1, max_rows=100)

    assert (batch.distinct, batch.repeated, batch.rows) == (2, 1, 4)
    assert kept(batch) == [
        ("ada@example.com", "Lovelace, Ada"),
        ("bob@example.com", 'Bob "the" Builder'),
    ]
