"""What counts as a database outage: one classification, used by requests, startup and tasks."""

import errno
from pathlib import Path

import pytest
from sqlalchemy import text

from app.core.db import DatabaseUnreachable, create_engine, is_database_unavailable
from tests.conftest import make_settings
from tests.support.postgres import free_port
from tests.support.smtp import SMTPServer


async def test_a_refused_connection_is_raised_as_database_unreachable_not_a_bare_oserror(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/nothing"
    engine = create_engine(make_settings(url, smtp, tmp_path), pool_size=1)
    try:
        with pytest.raises(DatabaseUnreachable) as raised:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()

    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    assert is_database_unavailable(raised.value)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.ECONNREFUSED])
def test_an_oserror_from_anywhere_but_the_database_is_not_an_outage(code: int) -> None:
    assert not is_database_unavailable(OSError(code, "from a disk, or a socket of our own"))
