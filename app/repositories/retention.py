"""SQL that deletes what is past its retention, one bounded batch per statement.

Every statement picks at most `limit` rows by their primary key in a
subquery and deletes (or marks) just those, checking the condition again on
each row it touches: a row that changed meanwhile (an upload retried, a
notification re-armed) is left alone. Each runs in a short transaction of its
own, so no batch holds a lock for long.
"""

from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import AuditEntry, IdempotencyKey, Notification, Upload, UploadChunk
from app.models.base import TaskStatus
from app.models.notification import Channel
from app.models.upload import UploadRowError


def _settled_before(cutoff: datetime) -> ColumnElement[bool]:
    """An upload whose import succeeded or failed before `cutoff`."""
    return or_(
        and_(Upload.status == TaskStatus.SUCCEEDED, Upload.succeeded_at < cutoff),
        and_(Upload.status == TaskStatus.FAILED, Upload.failed_at < cutoff),
    )


async def forget_upload_contents(
    connection: AsyncConnection, *, settled_before: datetime, now: datetime, limit: int
) -> int:
    """Mark the files of uploads settled before `settled_before` as deleted; how many.

    The mark comes first and its chunks go after it: an import claims only an
    upload that is not settled, so none is reading a file marked here, and one
    retried later finds the mark and fails with that reason instead of
    reading a file half gone.
    """
    condition = and_(_settled_before(settled_before), Upload.content_deleted_at.is_(None))
    picked = select(Upload.id).where(condition).limit(limit)
    result = await connection.execute(
        update(Upload)
        .where(Upload.id.in_(picked), condition)
        .values(content_deleted_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)


async def delete_forgotten_chunks(connection: AsyncConnection, *, limit: int) -> int:
    """Delete up to `limit` chunks of files marked as deleted; how many."""
    picked = (
        select(UploadChunk.upload_id, UploadChunk.start)
        .join(Upload, Upload.id == UploadChunk.upload_id)
        .where(Upload.content_deleted_at.is_not(None))
        .limit(limit)
    )
    result = await connection.execute(
        delete(UploadChunk).where(tuple_(UploadChunk.upload_id, UploadChunk.start).in_(picked))
    )
    return int(result.rowcount)


async def delete_old_upload_row_errors(
    connection: AsyncConnection, *, settled_before: datetime, limit: int
) -> int:
    """The rejected rows of uploads settled before `settled_before`, a batch of them."""
    picked = (
        select(UploadRowError.upload_id, UploadRowError.line)
        .join(Upload, Upload.id == UploadRowError.upload_id)
        .where(_settled_before(settled_before))
        .limit(limit)
    )
    result = await connection.execute(
        delete(UploadRowError).where(
            tuple_(UploadRowError.upload_id, UploadRowError.line).in_(picked)
        )
    )
    return int(result.rowcount)


async def delete_old_uploads(
    connection: AsyncConnection, *, settled_before: datetime, limit: int
) -> int:
    """Uploads settled before `settled_before` whose rejected rows are gone already (their
    chunks, a file's worth at most, go with them)."""
    condition = and_(
        _settled_before(settled_before),
        ~exists().where(UploadRowError.upload_id == Upload.id),
    )
    picked = select(Upload.id).where(condition).limit(limit)
    result = await connection.execute(delete(Upload).where(Upload.id.in_(picked), condition))
    return int(result.rowcount)


async def delete_expired_idempotency_keys(
    connection: AsyncConnection, *, now: datetime, limit: int
) -> int:
    picked = (
        select(IdempotencyKey.scope, IdempotencyKey.key)
        .where(IdempotencyKey.expires_at < now)
        .limit(limit)
    )
    result = await connection.execute(
        delete(IdempotencyKey).where(
            tuple_(IdempotencyKey.scope, IdempotencyKey.key).in_(picked),
            IdempotencyKey.expires_at < now,
        )
    )
    return int(result.rowcount)


async def delete_old_audit_entries(
    connection: AsyncConnection, *, before: datetime, limit: int
) -> int:
    picked = select(AuditEntry.id).where(AuditEntry.occurred_at < before).limit(limit)
    result = await connection.execute(delete(AuditEntry).where(AuditEntry.id.in_(picked)))
    return int(result.rowcount)


async def delete_old_notifications(
    connection: AsyncConnection, *, status: TaskStatus, settled_before: datetime, limit: int
) -> int:
    """Notifications that settled as `status` (succeeded or failed) before `settled_before`."""
    if status is TaskStatus.SUCCEEDED:
        condition = and_(Notification.status == status, Notification.succeeded_at < settled_before)
    else:
        condition = and_(
            # The failed list's index leads with the channel.
            Notification.channel.in_(list(Channel)),
            Notification.status == status,
            Notification.failed_at < settled_before,
        )
    picked = select(Notification.id).where(condition).limit(limit)
    result = await connection.execute(
        delete(Notification).where(Notification.id.in_(picked), condition)
    )
    return int(result.rowcount)
