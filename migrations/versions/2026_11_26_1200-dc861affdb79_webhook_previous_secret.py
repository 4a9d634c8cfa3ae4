"""Keep a user's previous webhook secret, and when it stops signing, after a rotation.

Revision ID: dc861affdb79
Revises: 7a3c5e1d9b20
Create Date: 2026-11-26 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dc861affdb79"
down_revision: str | None = "7a3c5e1d9b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("webhook_previous_secret", sa.String(length=100), nullable=True))
        batch.add_column(
            sa.Column(
                "webhook_previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("webhook_previous_secret_expires_at")
        batch.drop_column("webhook_previous_secret")
