"""Indexes for GET /admin/audit: each filter, in newest-first page order.

Revision ID: f2c3d3fc131a
Revises: e8b62d28f782
Create Date: 2026-11-22 00:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "f2c3d3fc131a"
down_revision: str | None = "e8b62d28f782"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, columns): pages are ordered by (occurred_at, id), so every index ends
# with both, and the (occurred_at) and (resource, occurred_at) ones are replaced.
OLD = [
    ("ix_audit_entries_occurred_at", ["occurred_at"]),
    ("ix_audit_entries_resource_occurred_at", ["resource", "occurred_at"]),
]
NEW = [
    ("ix_audit_entries_occurred_at_id", ["occurred_at", "id"]),
    ("ix_audit_entries_resource_occurred_at_id", ["resource", "occurred_at", "id"]),
    ("ix_audit_entries_action_occurred_at_id", ["action", "occurred_at", "id"]),
    ("ix_audit_entries_actor_occurred_at_id", ["actor", "occurred_at", "id"]),
]


def upgrade() -> None:
    for name, _ in OLD:
        op.drop_index(name, table_name="audit_entries")
    for name, columns in NEW:
        op.create_index(name, "audit_entries", columns)


def downgrade() -> None:
    for name, _ in NEW:
        op.drop_index(name, table_name="audit_entries")
    for name, columns in OLD:
        op.create_index(name, "audit_entries", columns)
