"""Readiness: the database answers and its schema is the one this code expects."""

import asyncio

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import DatabaseUnreachable, root_cause
from app.core.errors import ServiceUnavailable
from app.core.migrations import current_revision, head_revision

_CHECK_TIMEOUT_SECONDS = 2.0


async def check_ready(engine: AsyncEngine) -> str:
    """The migration revision in use; raises ServiceUnavailable when not ready."""
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS), engine.connect() as connection:
            revision = await current_revision(connection)
    except (SQLAlchemyError, DatabaseUnreachable, TimeoutError) as exc:
        # Public: the kind of failure, not the address it was met at.
        raise ServiceUnavailable(f"database unreachable: {type(root_cause(exc)).__name__}") from exc
    expected = head_revision()
    if revision != expected:
        raise ServiceUnavailable(
            f"database schema at {revision or 'nothing'}, code expects {expected}: "
            "run `python -m app migrate`"
        )
    return revision
