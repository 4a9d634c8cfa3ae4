"""Uploads' bytes in the database (upload_chunks), not on a disk; what retention needs.

Every process becomes stateless: an import can be resumed by any process on
any machine, with no shared volume. The upgrade copies the files of existing
uploads from DATA_DIR/uploads into the database, so none is lost; an upload
whose import had not finished and whose file is not there (run the upgrade
where DATA_DIR is mounted) fails with that reason, visibly, instead of
silently. Settled uploads whose file is gone just keep their counts. The
files themselves are left for the operator to delete.

Revision ID: 5b1e7c2a9d64
Revises: 3c9e5b7a1d42
Create Date: 2026-11-28 09:00:00+00:00
"""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import op

from app.core.config import Settings

revision: str = "5b1e7c2a9d64"
down_revision: str | None = "3c9e5b7a1d42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")
_CHUNK_BYTES = 1024 * 1024
_uploads = sa.table(
    "uploads",
    sa.column("id", sa.Uuid()),
    sa.column("stored_name", sa.String()),
    sa.column("status", sa.String()),
    sa.column("last_error", sa.Text()),
    sa.column("failed_at", sa.DateTime(timezone=True)),
    sa.column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.column("lease_until", sa.DateTime(timezone=True)),
    sa.column("content_deleted_at", sa.DateTime(timezone=True)),
)
_chunks = sa.table(
    "upload_chunks",
    sa.column("upload_id", sa.Uuid()),
    sa.column("start", sa.BigInteger()),
    sa.column("data", sa.LargeBinary()),
)


def upgrade() -> None:
    op.create_table(
        "upload_chunks",
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["uploads.id"],
            name=op.f("fk_upload_chunks_upload_id_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("upload_id", "start", name=op.f("pk_upload_chunks")),
    )
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("content_deleted_at", sa.DateTime(timezone=True)))
    _copy_files_in(Settings().data_dir / "uploads")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_constraint("uq_uploads_stored_name", type_="unique")
        batch.drop_column("stored_name")
    op.create_index(
        "ix_notifications_succeeded",
        "notifications",
        ["succeeded_at"],
        postgresql_where=sa.text("status = 'succeeded'"),
        sqlite_where=sa.text("status = 'succeeded'"),
    )


def _copy_files_in(folder: Path) -> None:
    """Each upload's file from `folder` into upload_chunks, a chunk at a time."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    for upload_id, stored_name, status in bind.execute(
        sa.select(_uploads.c.id, _uploads.c.stored_name, _uploads.c.status)
    ).all():
        path = folder / stored_name
        if path.is_file():
            with path.open("rb") as file:
                start = 0
                while data := file.read(_CHUNK_BYTES):
                    bind.execute(
                        _chunks.insert().values(upload_id=upload_id, start=start, data=data)
                    )
                    start += len(data)
        elif status in ("succeeded", "failed"):
            bind.execute(
                _uploads.update().where(_uploads.c.id == upload_id).values(content_deleted_at=now)
            )
        else:
            logger.warning("upload %s: its file %s is not in %s", upload_id, stored_name, folder)
            bind.execute(
                _uploads.update()
                .where(_uploads.c.id == upload_id)
                .values(
                    status="failed",
                    failed_at=now,
                    next_attempt_at=None,
                    lease_until=None,
                    content_deleted_at=now,
                    last_error=f"the file was not in {folder} when the database took over the "
                    "uploads' bytes; upload it again",
                )
            )


def downgrade() -> None:
    # The bytes do not go back to a disk: uploads keep their counts, and an
    # unfinished import would need its file uploaded again.
    op.drop_index("ix_notifications_succeeded", table_name="notifications")
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("stored_name", sa.String(length=64), nullable=True))
    op.execute("UPDATE uploads SET stored_name = CAST(id AS VARCHAR) || '.csv'")
    with op.batch_alter_table("uploads") as batch:
        batch.alter_column("stored_name", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint("uq_uploads_stored_name", ["stored_name"])
        batch.drop_column("content_deleted_at")
    op.drop_table("upload_chunks")
