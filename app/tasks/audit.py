"""Audit entries: best-effort background writes, written together.

Best-effort means: the entry is written after the response, once; if the
process is killed between the response and the write, the entry is lost. That
trade is deliberate (the entry is a record of the request, not work the user is
owed), and documented. The entry id makes a repeated write a no-op.

Entries are written together (app.tasks.audit_writer): one INSERT for all
those of the requests answered within a few milliseconds.
"""

import logging

from app.schemas.audit import AuditEntryCreate
from app.tasks.runtime import current

logger = logging.getLogger(__name__)


async def write_audit_entry(entry: AuditEntryCreate) -> None:
    """The BackgroundTasks entry point. Never raises: the request already succeeded."""
    try:
        await current().audit.write(entry)
    except Exception:
        # The log line keeps the entry, so even a lost write leaves a trace.
        logger.exception(
            "audit entry not written",
            extra={"fields": entry.model_dump(mode="json", exclude={"details"})},
        )
