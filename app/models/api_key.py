"""API keys: the service's one credential, kept only as a digest, each with its scopes."""

import uuid
from datetime import datetime

from sqlalchemy import String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONDocument, UTCDateTime, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Unique across revoked keys too, so an audit entry's actor names one key forever.
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the key: enough to tell keys apart in a listing or a
    # leaked-key report, far too few to guess the rest.
    prefix: Mapped[str] = mapped_column(String(16))
    # SHA-256 of the whole key, hex. A fast hash is right here: the key is 256
    # random bits, so there is no dictionary to slow an attacker down against.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Written at most once a minute per key, not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
