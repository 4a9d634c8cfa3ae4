"""Audit entries as recorded by a request and written by a background task."""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.schemas.query import NextCursor


class AuditEntryCreate(BaseModel):
    id: uuid.UUID = Field(description="Assigned at record time; writing it twice is a no-op.")
    occurred_at: datetime
    actor: str
    action: str
    resource: str
    request_id: str | None
    client_address: str | None
    details: dict[str, Any] = Field(default_factory=dict)


class AuditEntryRead(AuditEntryCreate):
    """An audit entry as `GET /admin/audit` lists it."""


class AuditPage(BaseModel):
    items: list[AuditEntryRead]
    next_cursor: NextCursor
