"""Compress uploaded files' chunks with lz4 where PostgreSQL can.

A CSV compresses well, and PostgreSQL compresses a chunk of it as it stores
it (TOAST). Its default method, pglz, cost about as much CPU as the upload
itself; lz4 (PostgreSQL 14 and later, where the server was built with it)
does the same job for a fraction of that, and is read back faster. Chunks
already stored keep the method they were written with. SQLite stores the
bytes as they come.

Revision ID: 8d4f1a6c2e37
Revises: 5b1e7c2a9d64
Create Date: 2026-11-29 09:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8d4f1a6c2e37"
down_revision: str | None = "5b1e7c2a9d64"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SERVER_HAS_LZ4 = sa.text(
    "SELECT coalesce(bool_or(enumvals @> ARRAY['lz4']), false) FROM pg_settings"
    " WHERE name = 'default_toast_compression'"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.scalar(_SERVER_HAS_LZ4):
        op.execute("ALTER TABLE upload_chunks ALTER COLUMN data SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE upload_chunks ALTER COLUMN data SET COMPRESSION DEFAULT")
