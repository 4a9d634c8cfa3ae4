"""Retention: delete what is past its age, in batches, for the worker's loop and `prune`.

What goes, and when (each age a setting, see `.env.example`):

| what | deleted | setting |
|---|---|---|
| an upload's file (its chunks) | days after its import settled | UPLOAD_CONTENT_RETENTION_DAYS |
| an upload, its counts and rejected rows | days after its import settled | UPLOAD_RETENTION_DAYS |
| an idempotency key | when its 24 hours are over | - |
| an audit entry | days after it occurred | AUDIT_RETENTION_DAYS |
| a notification delivered or failed | days after it settled | NOTIFICATION_RETENTION_DAYS |

Work that is not settled is never touched: an import in progress keeps its
file, a notification still owed stays. Each batch is one short transaction
(see app.repositories.retention), so pruning a year of audit entries never
holds a lock that a request waits on for long.
"""

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.config import Settings
from app.models.base import TaskStatus
from app.repositories import retention as retention_repo

# Chunks are 1 MiB each: a batch of them is this many times smaller than one of rows.
_CHUNKS_PER_ROW_BATCH = 100

Step = Callable[[AsyncConnection], Awaitable[int]]
Report = dict[str, int]


def _steps(settings: Settings, now: datetime) -> list[tuple[str, int, Step]]:
    """(what, batch size, one batch of it), in the order they run."""
    batch = settings.prune_batch_size
    chunks = max(1, batch // _CHUNKS_PER_ROW_BATCH)
    content_cutoff = now - timedelta(days=settings.upload_content_retention_days)
    upload_cutoff = now - timedelta(days=settings.upload_retention_days)
    notification_cutoff = now - timedelta(days=settings.notification_retention_days)
    audit_cutoff = now - timedelta(days=settings.audit_retention_days)
    repo = retention_repo
    step = functools.partial
    return [
        ("upload files", batch, step(repo.forget_upload_contents, settled_before=content_cutoff,
                                     now=now, limit=batch)),
        ("upload chunks", chunks, step(repo.delete_forgotten_chunks, limit=chunks)),
        ("upload rejected rows", batch, step(repo.delete_old_upload_row_errors,
                                             settled_before=upload_cutoff, limit=batch)),
        ("uploads", batch, step(repo.delete_old_uploads, settled_before=upload_cutoff,
                                limit=batch)),
        ("idempotency keys", batch, step(repo.delete_expired_idempotency_keys, now=now,
                                         limit=batch)),
        ("audit entries", batch, step(repo.delete_old_audit_entries, before=audit_cutoff,
                                      limit=batch)),
        ("notifications delivered", batch, step(repo.delete_old_notifications,
                                                status=TaskStatus.SUCCEEDED,
                                                settled_before=notification_cutoff, limit=batch)),
        ("notifications failed", batch, step(repo.delete_old_notifications,
                                             status=TaskStatus.FAILED,
                                             settled_before=notification_cutoff, limit=batch)),
    ]  # fmt: skip


async def prune(
    engine: AsyncEngine,
    settings: Settings,
    *,
    now: datetime,
    stop: asyncio.Event | None = None,
) -> Report:
    """Everything past its retention at `now`, deleted a batch at a time; how many of each.

    `stop` set: finish the batch under way and return what was done.
    """
    report: Report = {}
    for what, size, step in _steps(settings, now):
        report[what] = 0
        while stop is None or not stop.is_set():
            async with engine.begin() as connection:
                deleted = await step(connection)
            report[what] += deleted
            if deleted < size:
                break
    return report
