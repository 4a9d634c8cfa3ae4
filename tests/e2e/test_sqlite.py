"""The embedded default (SQLite) under the writes one busy host can make at once."""

import asyncio
import shutil
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.core import db
from app.main import create_app
from tests.conftest import make_settings
from tests.support.keys import NO_RATE_LIMITS, SERVER_KEY
from tests.support.server import ServerProcess
from tests.support.smtp import SMTPServer

WRITERS = 32
TURNS = 8


async def test_the_embedded_default_takes_32_concurrent_writers_with_zero_errors(
    tmp_path: Path,
) -> None:
    """32 clients signing people up and notifying them, each as fast as it is answered,
    while a CSV import commits its batches and the welcome emails settle: every
    request is answered 2xx, and nothing waits until SQLite's busy timeout runs out."""
    server = ServerProcess(
        {
            "DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "WARNING",
            "UPLOAD_BATCH_ROWS": "20000",
            "SHUTDOWN_GRACE_SECONDS": "1",
            "BOOTSTRAP_API_KEY": SERVER_KEY,
            # One key's requests, past its rate limit: the limits are not under test here.
            **NO_RATE_LIMITS,
        },
        tmp_path / "server.log",
    ).start()
    statuses: Counter[int] = Counter()
    try:
        people = "".join(f"imported{n}@example.com,Imported {n}\n" for n in range(100_000))
        limits = httpx.Limits(max_connections=WRITERS * 2)
        async with server.client(timeout=60, limits=limits) as http:
            upload = await http.post(
                "/uploads", files={"file": ("people.csv", f"email,name\n{people}", "text/csv")}
            )

            async def writer(number: int) -> None:
                for turn in range(TURNS):
                    email = f"writer{number}.{turn}@example.com"
                    signup = await http.post("/signups", json={"email": email, "name": "W"})
                    statuses[signup.status_code] += 1
                    if signup.status_code == 201:
                        notified = await http.post(
                            f"/users/{signup.json()['id']}/notifications",
                            json={"channel": "email", "subject": "Hi", "body": "There"},
                        )
                        statuses[notified.status_code] += 1

            await asyncio.gather(*(writer(number) for number in range(WRITERS)))
            imported = (await http.get(upload.headers["location"])).json()
    finally:
        server.stop()

    assert upload.status_code == 202
    assert imported["rows_imported"] > 0  # its batches were committing meanwhile
    assert statuses == {201: WRITERS * TURNS, 202: WRITERS * TURNS}
    assert "database is locked" not in server.log()


async def test_a_write_waiting_behind_a_longer_one_waits_its_turn_not_the_busy_timeout(
    tmp_path: Path, sqlite_template: Path, smtp: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's busy handler gives up after its timeout; a write queued behind a long
    one (an import's batch) must wait its turn however long that takes."""
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "signup-service.db"
    shutil.copyfile(sqlite_template, path)
    app = create_app(make_settings(f"sqlite+aiosqlite:///{path}", smtp, tmp_path / "data"))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        holding = asyncio.Event()

        async def long_write() -> None:
            async with app.state.database.task_engine.begin() as connection:
                await connection.execute(text("DELETE FROM users"))
                holding.set()
                await asyncio.sleep(0.5)  # five busy timeouts

        writing = asyncio.create_task(long_write())
        await holding.wait()
        response = await http.post("/signups", json={"email": "ada@example.com", "name": "Ada"})
        await writing

    assert response.status_code == 201, response.text
