"""SQL for uploads: the row, its file's chunks, its progress checkpoints, its rejected rows."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models.upload import CSV_IMPORT_STATE, Upload, UploadChunk, UploadRowError
from app.repositories.pagination import Page, paginate

Executor = AsyncConnection | AsyncSession


def new_upload(*, upload_id: uuid.UUID, now: datetime) -> Upload:
    """An upload owed its import, not yet added: its file and the form's fields come later."""
    return Upload(
        id=upload_id,
        filename="",
        size_bytes=0,
        sha256="",
        send_welcome=True,
        created_at=now,
        next_offset=0,
        next_line=1,
        rows_total=0,
        rows_imported=0,
        rows_duplicate=0,
        rows_rejected=0,
        **CSV_IMPORT_STATE.owed(now),
    )


async def add_chunk(session: AsyncSession, upload_id: uuid.UUID, start: int, data: bytes) -> None:
    await session.execute(insert(UploadChunk).values(upload_id=upload_id, start=start, data=data))


async def read_chunks(
    executor: Executor, upload_id: uuid.UUID, *, offset: int, limit: int
) -> list[tuple[int, bytes]]:
    """Up to `limit` chunks of the file, in order, from the one that holds byte `offset`.

    ```sql
    SELECT start, data FROM upload_chunks
    WHERE upload_id = :upload_id AND start >= (
        SELECT max(start) FROM upload_chunks WHERE upload_id = :upload_id AND start <= :offset)
    ORDER BY start LIMIT :limit
    ```
    """
    holding = (
        select(func.max(UploadChunk.start))
        .where(UploadChunk.upload_id == upload_id, UploadChunk.start <= offset)
        .scalar_subquery()
    )
    result = await executor.execute(
        select(UploadChunk.start, UploadChunk.data)
        .where(UploadChunk.upload_id == upload_id, UploadChunk.start >= holding)
        .order_by(UploadChunk.start)
        .limit(limit)
    )
    return [(start, data) for start, data in result]


async def get(session: AsyncSession, upload_id: uuid.UUID) -> Upload | None:
    return await session.get(Upload, upload_id)


async def list_recent(session: AsyncSession, *, cursor: str | None, limit: int) -> Page[Upload]:
    """A page of uploads, newest first."""
    return await paginate(
        session, select(Upload), key=(Upload.created_at, Upload.id), cursor=cursor, limit=limit
    )


async def row_errors(
    executor: Executor, upload_id: uuid.UUID, *, after_line: int, limit: int
) -> list[UploadRowError]:
    """Rejected rows in file order, from the line after `after_line`."""
    statement = (
        select(UploadRowError)
        .where(UploadRowError.upload_id == upload_id, UploadRowError.line > after_line)
        .order_by(UploadRowError.line)
        .limit(limit)
    )
    return list(await executor.scalars(statement))


async def mark_started(
    connection: AsyncConnection, upload_id: uuid.UUID, *, lease_until: datetime, now: datetime
) -> bool:
    """Record when the import first started; False if this run no longer owns the upload."""
    result = await connection.execute(
        update(Upload)
        .where(CSV_IMPORT_STATE.fenced(upload_id, lease_until))
        .values(started_at=func.coalesce(Upload.started_at, now))
        .returning(Upload.id)
    )
    return result.first() is not None


async def advance(
    connection: AsyncConnection,
    upload_id: uuid.UUID,
    *,
    lease_until: datetime,
    from_offset: int,
    to_offset: int,
    next_line: int,
    rows: int,
    rejected: int,
    ignored_columns: list[str],
) -> bool:
    """Move the checkpoint past one batch and count its rows; False if not ours to move.

    The first statement of a batch's transaction: fenced by the lease and by
    the offset the batch started at, it also locks the upload row, so a run
    that took over waits for this batch to commit (or roll back) and then
    resumes exactly after it.
    """
    result = await connection.execute(
        update(Upload)
        .where(CSV_IMPORT_STATE.fenced(upload_id, lease_until), Upload.next_offset == from_offset)
        .values(
            next_offset=to_offset,
            next_line=next_line,
            rows_total=Upload.rows_total + rows,
            rows_rejected=Upload.rows_rejected + rejected,
            ignored_columns=ignored_columns,
        )
        .returning(Upload.id)
    )
    return result.first() is not None


async def count_imported(
    connection: AsyncConnection, upload_id: uuid.UUID, *, imported: int, duplicate: int
) -> None:
    await connection.execute(
        update(Upload)
        .where(Upload.id == upload_id)
        .values(
            rows_imported=Upload.rows_imported + imported,
            rows_duplicate=Upload.rows_duplicate + duplicate,
        )
    )


async def add_row_errors(
    connection: AsyncConnection,
    upload_id: uuid.UUID,
    rejected: Sequence[tuple[int, str, str, str]],
) -> None:
    if not rejected:
        return
    await connection.execute(
        insert(UploadRowError),
        [
            {"upload_id": upload_id, "line": line, "email": email, "name": name, "reason": reason}
            for line, email, name, reason in rejected
        ],
    )
