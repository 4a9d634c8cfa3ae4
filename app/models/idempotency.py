"""Stored first responses for requests sent with an Idempotency-Key header."""

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONDocument, UTCDateTime


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    # A key is scoped to one operation, so the same key on two endpoints never collides.
    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[Any] = mapped_column(JSONDocument, nullable=True)
    response_location: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)
