"""CSV uploads as the API shows them: the file, the import's status and its counts."""

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from app.models.upload import CSV_IMPORT_STATE, Upload, UploadRowError
from app.schemas.query import NextCursor
from app.schemas.task_state import TaskStateRead


class UploadRowErrorRead(BaseModel):
    line: int = Field(description="Where the row starts in the file; the header is line 1.")
    email: str = Field(description="The email cell as the file had it.")
    name: str = Field(description="The name cell as the file had it.")
    reason: str

    @classmethod
    def from_model(cls, error: UploadRowError) -> "UploadRowErrorRead":
        return cls(line=error.line, email=error.email, name=error.name, reason=error.reason)


class UploadSummary(TaskStateRead):
    """An upload and its import: succeeded_at is when the last row was imported."""

    id: uuid.UUID
    filename: str = Field(description="As the client named it; kept as data only.")
    size_bytes: int
    sha256: str
    send_welcome: bool
    bytes_read: int = Field(
        description="How far the import has read the file, of size_bytes: its progress, "
        "which moves a batch (UPLOAD_BATCH_ROWS rows) at a time."
    )
    rows_total: int = Field(description="Rows read so far (the header and blank lines aside).")
    rows_imported: int = Field(description="New users created.")
    rows_duplicate: int = Field(
        description="Rows whose email was already registered, or appeared earlier in the file."
    )
    rows_rejected: int = Field(description="Rows refused; see errors.csv.")
    ignored_columns: list[str] = Field(description="Header columns other than email and name.")
    created_at: datetime
    started_at: datetime | None = Field(description="When the import's first attempt began.")
    content_deleted_at: datetime | None = Field(
        description="When the file itself was deleted, UPLOAD_CONTENT_RETENTION_DAYS after "
        "its import settled (the counts and rejected rows stay); null while it is kept."
    )

    @classmethod
    def fields_from(cls, upload: Upload) -> dict[str, object]:
        return {
            "id": upload.id,
            "filename": upload.filename,
            "size_bytes": upload.size_bytes,
            "sha256": upload.sha256,
            "send_welcome": upload.send_welcome,
            "bytes_read": upload.next_offset,
            "rows_total": upload.rows_total,
            "rows_imported": upload.rows_imported,
            "rows_duplicate": upload.rows_duplicate,
            "rows_rejected": upload.rows_rejected,
            "ignored_columns": upload.ignored_columns or [],
            "created_at": upload.created_at,
            "started_at": upload.started_at,
            "content_deleted_at": upload.content_deleted_at,
            **TaskStateRead.fields(CSV_IMPORT_STATE, upload),
        }

    @classmethod
    def from_model(cls, upload: Upload) -> "UploadSummary":
        return cls.model_validate(cls.fields_from(upload))


class UploadRead(UploadSummary):
    first_errors: list[UploadRowErrorRead] = Field(
        description="The first rejected rows, in file order; errors_csv has them all."
    )
    errors_csv: str = Field(description="Every rejected row with its line and reason, as CSV.")

    @classmethod
    def with_errors(cls, upload: Upload, errors: list[UploadRowError]) -> "UploadRead":
        return cls.model_validate(
            {
                **cls.fields_from(upload),
                "first_errors": [UploadRowErrorRead.from_model(error) for error in errors],
                "errors_csv": f"/uploads/{upload.id}/errors.csv",
            }
        )


class UploadPage(BaseModel):
    items: list[UploadSummary]
    next_cursor: NextCursor
