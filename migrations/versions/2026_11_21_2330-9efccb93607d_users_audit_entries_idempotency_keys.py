"""Users with welcome-email state, audit entries, idempotency keys.

Revision ID: 9efccb93607d
Revises:
Create Date: 2026-11-21 23:30:51.968731+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "9efccb93607d"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("pending", "running", "retrying", "succeeded", "failed")
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        timestamp("created_at"),
        sa.Column(
            "welcome_status",
            sa.Enum(
                *STATUSES,
                name="welcome_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("welcome_generation", sa.Integer(), nullable=False),
        sa.Column("welcome_attempts", sa.Integer(), nullable=False),
        timestamp("welcome_next_attempt_at", nullable=True),
        timestamp("welcome_lease_until", nullable=True),
        timestamp("welcome_sent_at", nullable=True),
        sa.Column("welcome_last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_index(
        "ix_users_welcome_due",
        "users",
        ["welcome_next_attempt_at"],
        postgresql_where=sa.text("welcome_status IN ('pending', 'retrying')"),
        sqlite_where=sa.text("welcome_status IN ('pending', 'retrying')"),
    )
    op.create_index(
        "ix_users_welcome_lease",
        "users",
        ["welcome_lease_until"],
        postgresql_where=sa.text("welcome_status = 'running'"),
        sqlite_where=sa.text("welcome_status = 'running'"),
    )

    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Uuid(), nullable=False),
        timestamp("occurred_at"),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("resource", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("details", JSON_DOCUMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
    )
    op.create_index("ix_audit_entries_occurred_at", "audit_entries", ["occurred_at"])
    op.create_index(
        "ix_audit_entries_resource_occurred_at", "audit_entries", ["resource", "occurred_at"]
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        timestamp("created_at"),
        timestamp("expires_at"),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", JSON_DOCUMENT, nullable=True),
        sa.Column("response_location", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("audit_entries")
    op.drop_table("users")
