"""Run Alembic from the service: upgrade at `migrate`, and compare with head for /readyz."""

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`. Blocking: call it where no event loop runs."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


@cache
def head_revision() -> str:
    """The newest revision this code ships (read once: it cannot change while running)."""
    script = ScriptDirectory.from_config(alembic_config(""))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError("no Alembic revisions found")
    return head


async def current_revision(connection: AsyncConnection) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    has_table = await connection.run_sync(
        lambda sync: sync.dialect.has_table(sync, "alembic_version")
    )
    if not has_table:
        return None
    result = await connection.execute(text("SELECT version_num FROM alembic_version"))
    return result.scalar_one_or_none()
