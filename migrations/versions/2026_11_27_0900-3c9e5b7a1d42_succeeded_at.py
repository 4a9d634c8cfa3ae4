"""Name the time work succeeded after its status, as failed_at is: succeeded_at.

The welcome email said sent_at and a notification delivered_at for the moment
their status became `succeeded`; an upload already said succeeded_at.

Revision ID: 3c9e5b7a1d42
Revises: dc861affdb79
Create Date: 2026-11-27 09:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3c9e5b7a1d42"
down_revision: str | None = "dc861affdb79"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.alter_column("welcome_sent_at", new_column_name="welcome_succeeded_at")
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("delivered_at", new_column_name="succeeded_at")


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("succeeded_at", new_column_name="delivered_at")
    with op.batch_alter_table("users") as batch:
        batch.alter_column("welcome_succeeded_at", new_column_name="welcome_sent_at")
