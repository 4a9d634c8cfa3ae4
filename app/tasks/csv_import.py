"""CSV import: read the uploaded file back from the database, a batch at a time, and add its
people as users.

The runner claims, renews the lease, retries and settles; this is the import.

- The file comes back from the database a few chunks at a time; each batch
  gets a window of it (`_FileReader`), so memory holds a few MiB whatever
  the file's size.
- Parsing and validation run in a worker process (`csv_reader.read_batch`),
  one batch ahead of the database, so the two overlap and the event loop only
  waits.
- Each batch commits in one transaction: its new users (`bulk_users.insert_new`:
  binary COPY on PostgreSQL, one executemany elsewhere), its rejected rows, its
  counts, and the checkpoint (the byte offset after its last record). A run
  killed mid-file resumes at the last checkpoint, in this process or any
  other: no row is imported or counted twice.
- That transaction first moves the checkpoint, fenced by the lease and by the
  offset the batch started at: a run that lost its lease changes nothing.
- Imported users owe a welcome email (pending, due now) unless the upload said
  send_welcome=false; recovery sends them, SMTP_POOL_SIZE at a time.
"""

import asyncio
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.models.base import TaskStatus, utcnow
from app.models.upload import CSV_IMPORT_STATE, Upload
from app.repositories import bulk_users
from app.repositories import uploads as uploads_repo
from app.services.csv_reader import BadHeader, Batch, Header, Window, read_batch, read_header
from app.services.upload_files import CHUNK_BYTES
from app.tasks.runner import Claim, LeaseLost, PermanentTaskError, TaskKind, run_task
from app.tasks.runtime import Runtime

# What one batch is given of the file: it reads UPLOAD_BATCH_ROWS records, or what fits.
_WINDOW_BYTES = CHUNK_BYTES
# Chunks fetched per query: fewer round trips, a few MiB held at most.
_CHUNKS_PER_READ = 4
# A window grows (doubling) only while it holds no whole record; a record that
# needs more than this is not one the import will read.
_MOST_WINDOW_BYTES = 16 * CHUNK_BYTES


async def import_csv(upload_id: uuid.UUID) -> TaskStatus | None:
    """The BackgroundTasks entry point: an id in, nothing raised."""
    return await run_task(CSV_IMPORT, upload_id)


class _FileReader:
    """An upload's file as read back from the database, the window each batch needs."""

    def __init__(self, engine: AsyncEngine, upload_id: uuid.UUID, size: int) -> None:
        self._engine = engine
        self._upload_id = upload_id
        self.size = size
        self._data = b""  # the chunks held, from `_start`
        self._start = 0

    async def window(self, offset: int, size: int = _WINDOW_BYTES) -> Window:
        """Up to `size` bytes of the file from `offset` (fewer only at the file's end)."""
        end = self._start + len(self._data)
        if not self._start <= offset <= end:
            self._data, self._start = b"", offset
        while self._start + len(self._data) < min(offset + size, self.size):
            await self._read_more(offset)
        begin = offset - self._start
        data = self._data[begin : begin + size]
        return Window(data, offset, at_end=offset + len(data) >= self.size)

    async def _read_more(self, offset: int) -> None:
        """The next few chunks after those held, dropping what is behind `offset`."""
        if self._data:
            behind = max(0, offset - self._start)
            self._data, self._start = self._data[behind:], self._start + behind
        after = self._start + len(self._data) if self._data else offset
        async with self._engine.connect() as connection:
            chunks = await uploads_repo.read_chunks(
                connection, self._upload_id, offset=after, limit=_CHUNKS_PER_READ
            )
        if not chunks:
            raise PermanentTaskError(f"the file's bytes end at {after} of {self.size}")
        if not self._data:
            self._start = chunks[0][0]
        self._data += b"".join(data for _, data in chunks)

    async def after_line(self, offset: int) -> int:
        """The offset after the newline that ends the line `offset` is in (or the file's end)."""
        while offset < self.size:
            window = await self.window(offset)
            newline = window.data.find(b"\n")
            if newline >= 0:
                return offset + newline + 1
            offset += len(window.data)
        return self.size


async def _import(runtime: Runtime, claim: Claim) -> None:
    if claim.row["content_deleted_at"] is not None:
        raise PermanentTaskError(
            "the file's bytes were deleted (UPLOAD_CONTENT_RETENTION_DAYS); upload it again"
        )
    await _mark_started(runtime, claim)
    reader = _FileReader(runtime.engine, claim.row_id, claim.row["size_bytes"])
    try:
        header = read_header(await reader.window(0), runtime.settings.upload_max_line_bytes)
    except BadHeader as exc:
        raise PermanentTaskError(str(exc)) from None
    # Every user this attempt adds is created as of its start.
    rows = bulk_users.RowFormat(
        dialect=runtime.engine.dialect.name, send_welcome=claim.row["send_welcome"], now=utcnow()
    )
    batches = _Batches(runtime, reader, header, rows)
    offset, line = claim.row["next_offset"], claim.row["next_line"]
    reading = await batches.read(offset, line)
    try:
        while True:
            batch = await batches.whole(await reading, offset, line)
            if not batch.finished:
                # Parse the next batch while this one is written.
                reading = await batches.read(batch.next_offset, batch.next_line)
            await _commit(runtime, claim, batch, rows, from_offset=offset)
            if batch.finished:
                return
            offset, line = batch.next_offset, batch.next_line
    finally:
        _discard(reading)


@dataclass(frozen=True)
class _Batches:
    """Batches of one upload's file, parsed and validated in a worker process."""

    runtime: Runtime
    reader: _FileReader
    header: Header
    rows: bulk_users.RowFormat  # how the new users are written down for the database

    async def read(
        self, offset: int, line: int, size: int = _WINDOW_BYTES
    ) -> "asyncio.Task[Batch]":
        """The batch from `offset` (on `line`), given up to `size` bytes of the file, as a
        task to await later."""
        settings = self.runtime.settings
        return asyncio.create_task(
            self.runtime.processes.run(
                read_batch,
                await self.reader.window(offset, size),
                self.header,
                offset,
                line,
                max_rows=settings.upload_batch_rows,
                max_line_bytes=settings.upload_max_line_bytes,
                encode=self.rows.encode,
            )
        )

    async def whole(self, batch: Batch, offset: int, line: int) -> Batch:
        """`batch`, read again with a wider window while it held no whole record, and
        ending on a record boundary."""
        size = _WINDOW_BYTES
        while batch.needs_more:
            size *= 2
            if size > _MOST_WINDOW_BYTES:
                raise PermanentTaskError(
                    f"line {line}: a record runs past {_MOST_WINDOW_BYTES} bytes of blank lines"
                )
            batch = await (await self.read(offset, line, size))
        if batch.inside_long_line:
            batch.next_offset = await self.reader.after_line(batch.next_offset)
            batch.inside_long_line = False
            batch.finished = batch.next_offset >= self.reader.size
        return batch


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


async def _commit(
    runtime: Runtime, claim: Claim, batch: Batch, rows: bulk_users.RowFormat, *, from_offset: int
) -> None:
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
        imported = await bulk_users.insert_new(connection, batch.valid_rows, rows)
        await uploads_repo.add_row_errors(connection, claim.row_id, batch.rejected)
        await uploads_repo.count_imported(
            connection, claim.row_id, imported=imported, duplicate=batch.valid - imported
        )


CSV_IMPORT = TaskKind(
    state=CSV_IMPORT_STATE,
    perform=_import,
    concurrency=lambda settings: settings.upload_workers,
    returning=(
        Upload.send_welcome,
        Upload.size_bytes,
        Upload.content_deleted_at,
        Upload.next_offset,
        Upload.next_line,
    ),
    timeout=lambda settings: settings.upload_timeout_seconds,
    renews_lease=True,
)
