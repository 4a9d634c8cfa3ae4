"""CSV import: read the stored file a batch at a time and add its people as users.

The runner claims, renews the lease, retries and settles; this is the import.

- Parsing and validation run in a worker process (`csv_reader.read_batch`),
  one batch ahead of the database, so the two overlap and the event loop only
  waits.
- Each batch commits in one transaction: its new users (`bulk_users.insert_new`:
  COPY on PostgreSQL, one executemany elsewhere), its rejected rows, its
  counts, and the checkpoint (the byte offset after its last record). A run
  killed mid-file resumes at the last checkpoint: no row is imported or
  counted twice.
- That transaction first moves the checkpoint, fenced by the lease and by the
  offset the batch started at: a run that lost its lease changes nothing.
- Imported users owe a welcome email (pending, due now) unless the upload said
  send_welcome=false; recovery sends them, SMTP_POOL_SIZE at a time.
"""

import asyncio
import uuid
from pathlib import Path

from app.models.base import TaskStatus, utcnow
from app.models.upload import CSV_IMPORT_STATE, Upload
from app.repositories import bulk_users
from app.repositories import uploads as uploads_repo
from app.services import upload_files
from app.services.csv_reader import BadHeader, Batch, read_batch
from app.tasks.runner import Claim, LeaseLost, PermanentTaskError, TaskKind, run_task
from app.tasks.runtime import Runtime


async def import_csv(upload_id: uuid.UUID) -> TaskStatus | None:
    """The BackgroundTasks entry point: an id in, nothing raised."""
    return await run_task(CSV_IMPORT, upload_id)


async def _import(runtime: Runtime, claim: Claim) -> None:
    path = upload_files.stored_path(runtime.settings, claim.row["stored_name"])
    if not path.is_file():
        raise PermanentTaskError(f"the stored file {claim.row['stored_name']} is missing")
    await _mark_started(runtime, claim)
    offset = claim.row["next_offset"]
    reading = _read(runtime, path, offset, claim.row["next_line"])
    try:
        while True:
            batch = await reading
            if not batch.finished:
                # Parse the next batch while this one is written.
                reading = _read(runtime, path, batch.next_offset, batch.next_line)
            await _commit(runtime, claim, batch, from_offset=offset)
            if batch.finished:
                return
            offset = batch.next_offset
    finally:
        _discard(reading)


def _read(runtime: Runtime, path: Path, offset: int, line: int) -> "asyncio.Task[Batch]":
    """Parse and validate a batch in a worker process, as a task to await later."""
    settings = runtime.settings

    async def read() -> Batch:
        try:
            return await runtime.processes.run(
                read_batch,
                str(path),
                offset,
                line,
                max_rows=settings.upload_batch_rows,
                max_line_bytes=settings.upload_max_line_bytes,
            )
        except BadHeader as exc:
            raise PermanentTaskError(str(exc)) from None

    return asyncio.create_task(read())


def _discard(reading: "asyncio.Task[Batch]") -> None:
    """Drop a read-ahead nobody will use (the attempt ended early), retrieving its error."""
    if not reading.done():
        reading.cancel()
    elif not reading.cancelled():
        reading.exception()


async def _mark_started(runtime: Runtime, claim: Claim) -> None:
    async with claim.lease.held() as lease_until, runtime.engine.begin() as connection:
        if not await uploads_repo.mark_started(
            connection, claim.row_id, lease_until=lease_until, now=utcnow()
        ):
            raise LeaseLost


async def _commit(runtime: Runtime, claim: Claim, batch: Batch, *, from_offset: int) -> None:
    """One batch's users, rejected rows, counts and checkpoint: all committed, or none."""
    async with claim.lease.held() as lease_until, runtime.engine.begin() as connection:
        if not await uploads_repo.advance(
            connection,
            claim.row_id,
            lease_until=lease_until,
            from_offset=from_offset,
            to_offset=batch.next_offset,
            next_line=batch.next_line,
            rows=batch.rows,
            rejected=len(batch.rejected),
            ignored_columns=batch.ignored_columns,
        ):
            raise LeaseLost  # rolls the transaction back: nothing of this batch is kept
        imported = await bulk_users.insert_new(
            connection, batch.valid_csv, send_welcome=claim.row["send_welcome"], now=utcnow()
        )
        await uploads_repo.add_row_errors(connection, claim.row_id, batch.rejected)
        await uploads_repo.count_imported(
            connection, claim.row_id, imported=imported, duplicate=batch.valid - imported
        )


CSV_IMPORT = TaskKind(
    state=CSV_IMPORT_STATE,
    perform=_import,
    concurrency=lambda settings: settings.upload_workers,
    returning=(Upload.stored_name, Upload.send_welcome, Upload.next_offset, Upload.next_line),
    timeout=lambda settings: settings.upload_timeout_seconds,
    renews_lease=True,
)
