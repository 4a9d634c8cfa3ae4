"""CSV uploads: the file's bytes, the import's task state and progress, and its rejected rows."""

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONDocument, TaskStatus, UTCDateTime, task_status_type, utcnow
from app.models.task_state import TaskState


class Upload(Base):
    __tablename__ = "uploads"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # What the client called the file: shown, never used as a path.
    filename: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    send_welcome: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When retention deleted the file's bytes (UPLOAD_CONTENT_RETENTION_DAYS after the
    # import settled); the counts and rejected rows stay.
    content_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # The import's task state, in the row it is about (see CSV_IMPORT_STATE).
    status: Mapped[TaskStatus] = mapped_column(task_status_type("upload_status"))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    # The checkpoint, committed with each batch's rows: where the next batch
    # starts (a byte offset in the file, and that line's number), and
    # the counts so far. A resumed import starts here, so no row is read twice.
    next_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    next_line: Mapped[int] = mapped_column(Integer, default=1)
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_imported: Mapped[int] = mapped_column(Integer, default=0)
    rows_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    # Header columns other than email and name: ignored, and reported once.
    ignored_columns: Mapped[list[str] | None] = mapped_column(JSONDocument)

    __table_args__ = (
        # Recovery's due work, as for welcome emails: partial, so they hold
        # only the few unfinished uploads.
        Index(
            "ix_uploads_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'retrying')"),
            sqlite_where=text("status IN ('pending', 'retrying')"),
        ),
        Index(
            "ix_uploads_lease",
            "lease_until",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        Index(
            "ix_uploads_failed",
            "failed_at",
            "id",
            postgresql_where=text("status = 'failed'"),
            sqlite_where=text("status = 'failed'"),
        ),
        # GET /uploads: newest first, a page at a time.
        Index("ix_uploads_created_at_id", "created_at", "id"),
    )


class UploadChunk(Base):
    """A piece of an upload's file, in file order: the bytes live in the database, so any
    process on any machine can import them, and none needs a disk of its own."""

    __tablename__ = "upload_chunks"

    upload_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True
    )
    # The offset in the file of the chunk's first byte.
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


CSV_IMPORT_STATE = TaskState(
    name="csv_import",
    model=Upload,
    id=Upload.id,
    created_at=Upload.created_at,
    status=Upload.status,
    attempts=Upload.attempts,
    next_attempt_at=Upload.next_attempt_at,
    lease_until=Upload.lease_until,
    succeeded_at=Upload.succeeded_at,
    failed_at=Upload.failed_at,
    last_error=Upload.last_error,
)


class UploadRowError(Base):
    """A rejected row: its line in the file, its values as read, and why."""

    __tablename__ = "upload_row_errors"

    upload_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
