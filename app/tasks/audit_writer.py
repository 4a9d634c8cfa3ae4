"""Audit entries written together: one INSERT for the entries of many requests.

Every request that changes something leaves an entry, and a statement (with
its connection checkout and round trip) for each one cost a busy server a
good part of what the request itself costs. So an entry is written at once
when no write is under way, and otherwise waits for the write under way to
end: the next write takes every entry that queued meanwhile. A quiet server
writes each entry as before; a busy one writes them in batches as large as
its load makes them. An entry is still written once, after its response, or
logged as lost (see app.tasks.audit).
"""

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import single_statement
from app.repositories import audit as audit_repo
from app.schemas.audit import AuditEntryCreate
from app.tasks.batching import Batches


class AuditWriter:
    """This process's audit entries, written a batch at a time."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # No window: a quiet server writes each entry at once.
        self._batches = Batches(self._write, window=0)

    async def write(self, entry: AuditEntryCreate) -> None:
        """Write the entry with the others queued about now; raises what the write raised.
        The write goes on if the caller is cancelled meanwhile."""
        written = asyncio.get_running_loop().create_future()
        self._batches.add((entry, written))
        await asyncio.shield(written)

    async def _write(self, batch: list[tuple[AuditEntryCreate, asyncio.Future[None]]]) -> None:
        try:
            async with single_statement(self._engine) as connection:
                await audit_repo.add_many(connection, [entry for entry, _ in batch])
        except Exception as exc:  # each entry's writer logs it
            for _, written in batch:
                written.set_exception(exc)
        else:
            for _, written in batch:
                written.set_result(None)
