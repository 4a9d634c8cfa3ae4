"""INSERT ... ON CONFLICT for whichever database the session is bound to."""

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def upsert_insert(target: AsyncSession | str, model: Any) -> Any:
    """An INSERT with `on_conflict_do_nothing` / `on_conflict_do_update` for this dialect.

    PostgreSQL and SQLite spell ON CONFLICT the same way, but SQLAlchemy keeps
    the construct per dialect. `target` is a session or a dialect name.
    """
    dialect = target if isinstance(target, str) else target.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)
