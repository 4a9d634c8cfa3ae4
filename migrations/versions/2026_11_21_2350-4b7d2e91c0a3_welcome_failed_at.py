"""Record when a welcome email failed, for the admin dead-letter list.

Revision ID: 4b7d2e91c0a3
Revises: 9efccb93607d
Create Date: 2026-11-21 23:50:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4b7d2e91c0a3"
down_revision: str | None = "9efccb93607d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("welcome_failed_at", sa.DateTime(timezone=True), nullable=True))
    # When older failures happened was not recorded; the signup time is the best
    # lower bound, and keeps every failed row on the dead-letter list.
    op.execute("UPDATE users SET welcome_failed_at = created_at WHERE welcome_status = 'failed'")
    op.create_index(
        "ix_users_welcome_failed",
        "users",
        ["welcome_failed_at", "id"],
        postgresql_where=sa.text("welcome_status = 'failed'"),
        sqlite_where=sa.text("welcome_status = 'failed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_users_welcome_failed", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("welcome_failed_at")
