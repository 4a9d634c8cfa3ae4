"""The CSV import under the task contract: checkpoints, resumption, fencing, recovery."""

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.shutdown import Shutdown
from app.models import Upload, UploadChunk, UploadRowError, User
from app.models.base import TaskStatus, utcnow
from app.repositories import bulk_users
from app.routers import uploads as uploads_router
from app.tasks import csv_import
from app.tasks.csv_import import CSV_IMPORT
from app.tasks.recovery import recover_once, run_recovery_loop
from app.tasks.registry import MUST_COMPLETE
from app.tasks.runner import Claim, run_task
from app.tasks.runtime import Runtime, current
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually_async

ROWS = [f"user{n}@example.com,User {n}" for n in range(20)] + ["bad,Bad", "USER1@example.com,Dup"]
CONTENT = ("email,name\n" + "".join(f"{row}\n" for row in ROWS)).encode()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"upload_batch_rows": 4, "recovery_grace_seconds": 0}


@pytest.fixture
def not_scheduled(monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /uploads commits the upload but schedules nothing, as if the process died."""

    async def nothing(_upload_id: uuid.UUID) -> None:
        return None

    monkeypatch.setattr(uploads_router, "import_csv", nothing)


async def post(client: httpx.AsyncClient, content: bytes = CONTENT) -> uuid.UUID:
    response = await client.post("/uploads", files={"file": ("people.csv", content, "text/csv")})
    assert response.status_code == 202
    return uuid.UUID(response.json()["id"])


async def state(app: FastAPI, upload_id: uuid.UUID) -> Upload:
    async with app.state.database.request_sessions() as session:
        upload: Upload | None = await session.get(Upload, upload_id)
    assert upload is not None
    return upload


async def count(app: FastAPI, model: type[Any]) -> int:
    async with app.state.database.request_sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def assert_imported_exactly_once(app: FastAPI, upload_id: uuid.UUID) -> None:
    upload = await state(app, upload_id)
    assert upload.status is TaskStatus.SUCCEEDED
    assert (upload.rows_total, upload.rows_imported) == (22, 20)
    assert (upload.rows_duplicate, upload.rows_rejected) == (1, 1)
    assert upload.next_offset == len(CONTENT)
    assert await count(app, User) == 20
    assert await count(app, UploadRowError) == 1


async def test_a_batch_that_fails_is_rolled_back_and_the_retry_resumes_at_the_last_checkpoint(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = bulk_users.insert_new
    calls = 0

    async def fails_on_the_third_batch(connection: AsyncConnection, *args: Any) -> int:
        nonlocal calls
        calls += 1
        imported: int = await real(connection, *args)  # inserted; the commit never comes
        if calls == 3:
            raise ConnectionResetError("the database went away mid-batch")
        return imported

    monkeypatch.setattr(bulk_users, "insert_new", fails_on_the_third_batch)

    upload_id = await post(client)

    upload = await state(app, upload_id)
    assert upload.attempts == 2  # the in-process retry resumed the same import
    await assert_imported_exactly_once(app, upload_id)


async def test_recovery_resumes_an_import_whose_process_died_mid_file(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch, not_scheduled: None
) -> None:
    upload_id = await post(client)
    real = csv_import._commit
    committed = 0

    async def dies_after_two_batches(
        runtime: Runtime, claim: Claim, *batch: Any, from_offset: int
    ) -> None:
        nonlocal committed
        if committed == 2:
            raise asyncio.CancelledError  # the process is gone: nothing more happens
        await real(runtime, claim, *batch, from_offset=from_offset)
        committed += 1

    monkeypatch.setattr(csv_import, "_commit", dies_after_two_batches)
    with pytest.raises(asyncio.CancelledError):
        await csv_import._import(current(), await claim_now(app, upload_id))
    halfway = await state(app, upload_id)
    assert (halfway.status, halfway.rows_total) == (TaskStatus.RUNNING, 8)
    monkeypatch.setattr(csv_import, "_commit", real)
    await expire_lease(app, upload_id)

    assert await run_task(CSV_IMPORT, upload_id) is TaskStatus.SUCCEEDED

    await assert_imported_exactly_once(app, upload_id)


async def claim_now(app: FastAPI, upload_id: uuid.UUID) -> Claim:
    """Claim the upload as the runner would, without running it."""
    from app.tasks.runner import _claim  # noqa: PLC0415 - the runner's own claim, for the test

    [claim] = await _claim(current(), CSV_IMPORT, [upload_id])
    return claim


async def expire_lease(app: FastAPI, upload_id: uuid.UUID) -> None:
    async with app.state.database.request_sessions() as session, session.begin():
        await session.execute(
            update(Upload)
            .where(Upload.id == upload_id)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )


async def test_a_run_whose_upload_was_taken_over_commits_nothing_more(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch, not_scheduled: None
) -> None:
    upload_id = await post(client)
    real = csv_import._commit
    commits = 0

    async def taken_over_after_one_batch(
        runtime: Runtime, claim: Claim, *batch: Any, from_offset: int
    ) -> None:
        nonlocal commits
        commits += 1
        if commits == 2:
            # Another process decided this run was dead and claimed the upload.
            async with app.state.database.request_sessions() as session, session.begin():
                await session.execute(
                    update(Upload)
                    .where(Upload.id == upload_id)
                    .values(lease_until=utcnow() + timedelta(hours=1), attempts=Upload.attempts + 1)
                )
        await real(runtime, claim, *batch, from_offset=from_offset)

    monkeypatch.setattr(csv_import, "_commit", taken_over_after_one_batch)

    assert await run_task(CSV_IMPORT, upload_id) is None

    upload = await state(app, upload_id)
    assert (upload.status, upload.attempts) == (TaskStatus.RUNNING, 2)
    assert (upload.rows_total, upload.rows_imported) == (4, 4)
    assert await count(app, User) == 4


async def test_an_upload_whose_bytes_retention_deleted_fails_with_the_reason(
    client: httpx.AsyncClient, app: FastAPI, not_scheduled: None
) -> None:
    upload_id = await post(client)
    async with app.state.database.request_engine.begin() as connection:
        await connection.execute(delete(UploadChunk).where(UploadChunk.upload_id == upload_id))
        await connection.execute(
            update(Upload).where(Upload.id == upload_id).values(content_deleted_at=utcnow())
        )

    assert await run_task(CSV_IMPORT, upload_id) is TaskStatus.FAILED

    upload = await state(app, upload_id)
    assert upload.last_error is not None
    assert upload.last_error.startswith("the file's bytes were deleted")
    assert await count(app, User) == 0


async def test_an_upload_nobody_scheduled_is_imported_by_recovery(
    client: httpx.AsyncClient, app: FastAPI, not_scheduled: None
) -> None:
    upload_id = await post(client)

    report = await recover_once(current())

    assert report["csv_import"]["succeeded"] == 1
    await assert_imported_exactly_once(app, upload_id)


@pytest.mark.parametrize(
    "settings_overrides",
    [{"upload_batch_rows": 4, "recovery_grace_seconds": 0, "recovery_interval_seconds": 0.05}],
)
async def test_a_long_import_does_not_hold_up_the_welcome_emails_of_its_users(
    client: httpx.AsyncClient,
    app: FastAPI,
    smtp: SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
    not_scheduled: None,
) -> None:
    first = await post(client)
    second = await post(client, CONTENT.replace(b"user", b"other"))
    release = asyncio.Event()
    real = csv_import._commit

    async def stalls_on_the_second_upload(
        runtime: Runtime, claim: Claim, *batch: Any, from_offset: int
    ) -> None:
        if claim.row_id == second:
            await release.wait()
        await real(runtime, claim, *batch, from_offset=from_offset)

    monkeypatch.setattr(csv_import, "_commit", stalls_on_the_second_upload)
    shutdown = Shutdown(grace_seconds=1)
    loop = asyncio.create_task(run_recovery_loop(current(), shutdown, MUST_COMPLETE))

    async def first_imports_users_welcomed() -> bool:
        return len(smtp.messages) == 20

    try:
        # The second import is stuck; the first one's 20 users get their emails meanwhile.
        await eventually_async(
            first_imports_users_welcomed, timeout=20, what="the first import's welcome emails"
        )
        assert (await state(app, second)).status is TaskStatus.RUNNING
        assert (await state(app, first)).status is TaskStatus.SUCCEEDED
    finally:
        release.set()
        shutdown.begin()
        await asyncio.wait_for(loop, 20)
