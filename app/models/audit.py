"""Audit entries: who did what to which resource, from where, and when."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONDocument, UTCDateTime


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    # Assigned when the entry is recorded, before the background write: writing
    # the same entry twice hits this key and becomes a no-op.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    resource: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)

    __table_args__ = (
        # GET /admin/audit pages newest first by (occurred_at, id), filtered by at
        # most a few exact matches: each filter has an index that is already in
        # that order, so a page reads only the rows it returns.
        Index("ix_audit_entries_occurred_at_id", "occurred_at", "id"),
        Index("ix_audit_entries_resource_occurred_at_id", "resource", "occurred_at", "id"),
        Index("ix_audit_entries_action_occurred_at_id", "action", "occurred_at", "id"),
        Index("ix_audit_entries_actor_occurred_at_id", "actor", "occurred_at", "id"),
    )
