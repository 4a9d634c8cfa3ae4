"""CSV uploads and their rejected rows; a user may owe no welcome email.

Revision ID: 4d717b79275f
Revises: f2c3d3fc131a
Create Date: 2026-11-22 00:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "4d717b79275f"
down_revision: str | None = "f2c3d3fc131a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("pending", "running", "retrying", "succeeded", "failed")
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def status_type(name: str) -> sa.Enum:
    return sa.Enum(*STATUSES, name=name, native_enum=False, create_constraint=True, length=16)


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def counter(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.Integer(), nullable=False)


def upgrade() -> None:
    # Users imported with send_welcome=false owe no welcome email: NULL, not a
    # status that would claim one was sent.
    with op.batch_alter_table("users") as batch:
        batch.alter_column(
            "welcome_status", existing_type=status_type("welcome_status"), nullable=True
        )

    op.create_table(
        "uploads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("stored_name", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("send_welcome", sa.Boolean(), nullable=False),
        timestamp("created_at"),
        sa.Column("status", status_type("upload_status"), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        timestamp("next_attempt_at", nullable=True),
        timestamp("lease_until", nullable=True),
        timestamp("started_at", nullable=True),
        timestamp("succeeded_at", nullable=True),
        timestamp("failed_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("next_line", sa.Integer(), nullable=False),
        counter("rows_total"),
        counter("rows_imported"),
        counter("rows_duplicate"),
        counter("rows_rejected"),
        sa.Column("ignored_columns", JSON_DOCUMENT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
        sa.UniqueConstraint("stored_name", name=op.f("uq_uploads_stored_name")),
    )
    op.create_index(
        "ix_uploads_due",
        "uploads",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'retrying')"),
        sqlite_where=sa.text("status IN ('pending', 'retrying')"),
    )
    op.create_index(
        "ix_uploads_lease",
        "uploads",
        ["lease_until"],
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "ix_uploads_failed",
        "uploads",
        ["failed_at", "id"],
        postgresql_where=sa.text("status = 'failed'"),
        sqlite_where=sa.text("status = 'failed'"),
    )
    op.create_index("ix_uploads_created_at_id", "uploads", ["created_at", "id"])

    op.create_table(
        "upload_row_errors",
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["uploads.id"],
            name=op.f("fk_upload_row_errors_upload_id_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("upload_id", "line", name=op.f("pk_upload_row_errors")),
    )


def downgrade() -> None:
    op.drop_table("upload_row_errors")
    op.drop_table("uploads")
    # The old schema cannot say "no welcome email owed". "succeeded" is the one
    # state in which nothing is ever sent, so silent imports stay silent.
    op.execute("UPDATE users SET welcome_status = 'succeeded' WHERE welcome_status IS NULL")
    with op.batch_alter_table("users") as batch:
        batch.alter_column(
            "welcome_status", existing_type=status_type("welcome_status"), nullable=False
        )
