"""Retention: `prune` deletes what is past its age, in batches, and nothing younger or unsettled;
on SQLite and PostgreSQL."""

import asyncio
import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from app.core.config import Settings
from app.models import (
    AuditEntry,
    IdempotencyKey,
    Notification,
    Upload,
    UploadChunk,
    UploadRowError,
    User,
)
from app.models.base import TaskStatus, utcnow
from app.routers import uploads as uploads_router
from app.services.retention import prune
from app.tasks.csv_import import CSV_IMPORT
from app.tasks.runner import run_task
from tests.support.server import PROJECT_ROOT

DAY = timedelta(days=1)


async def count(app: FastAPI, model: type[Any], *where: Any) -> int:
    async with app.state.database.request_sessions() as session:
        statement = select(func.count()).select_from(model).where(*where)
        return int(await session.scalar(statement) or 0)


async def backdate(app: FastAPI, model: Any, row_id: Any, **values: Any) -> None:
    async with app.state.database.request_engine.begin() as connection:
        await connection.execute(update(model).where(model.id == row_id).values(**values))


async def post_upload(client: httpx.AsyncClient, *rows: str) -> uuid.UUID:
    content = "email,name\n" + "".join(f"{row}\n" for row in rows)
    response = await client.post("/uploads", files={"file": ("people.csv", content.encode())})
    assert response.status_code == 202
    return uuid.UUID(response.json()["id"])


async def notify(client: httpx.AsyncClient, user_id: str) -> uuid.UUID:
    response = await client.post(
        f"/users/{user_id}/notifications",
        json={"channel": "email", "subject": "Hello", "body": "Hi"},
    )
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["id"])


async def test_prune_deletes_what_is_past_its_retention_and_nothing_younger_or_unsettled(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    now = utcnow()
    # Uploads: one settled 10 days ago (its file goes, the rest stays), one 100 days ago
    # (all of it goes), one yesterday, and one still importing since long ago.
    recent_file = await post_upload(client, "a@example.com,A")
    old_file = await post_upload(client, "b@example.com,B", "bad,Bad")
    ancient = await post_upload(client, "c@example.com,C", "worse,Worse")
    running = await post_upload(client, "d@example.com,D")
    await backdate(app, Upload, recent_file, succeeded_at=now - DAY)
    await backdate(app, Upload, old_file, succeeded_at=now - 10 * DAY)
    await backdate(app, Upload, ancient, succeeded_at=now - 100 * DAY)
    await backdate(
        app, Upload, running, status=TaskStatus.RUNNING, succeeded_at=None, lease_until=now + DAY
    )
    # Notifications: delivered and failed past their 90 days, one delivered yesterday,
    # one owed (retrying) that failed an attempt long ago.
    user = (await client.post("/signups", json={"email": "u@example.com", "name": "U"})).json()
    delivered_old, failed_old, delivered_young, owed = [
        await notify(client, user["id"]) for _ in range(4)
    ]
    await backdate(app, Notification, delivered_old, succeeded_at=now - 91 * DAY)
    await backdate(
        app, Notification, failed_old, status=TaskStatus.FAILED, failed_at=now - 91 * DAY
    )
    await backdate(app, Notification, delivered_young, succeeded_at=now - DAY)
    await backdate(app, Notification, owed, status=TaskStatus.RETRYING, failed_at=now - 91 * DAY)
    # Idempotency keys: one past its 24 hours, one within them.
    for key in ("expired", "live"):
        signup = {"email": f"{key}@example.com", "name": key}
        await client.post("/signups", json=signup, headers={"Idempotency-Key": key})
    async with app.state.database.request_engine.begin() as connection:
        await connection.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "expired")
            .values(expires_at=now - timedelta(minutes=1))
        )
    # Audit entries: all of them young, but one.
    audit_total = await count(app, AuditEntry)
    async with app.state.database.request_engine.begin() as connection:
        oldest = await connection.scalar(select(func.min(AuditEntry.occurred_at)))
        await connection.execute(
            update(AuditEntry)
            .where(AuditEntry.occurred_at == oldest)
            .values(occurred_at=now - 366 * DAY)
        )

    report = await prune(app.state.database.task_engine, settings, now=utcnow())

    assert report == {
        "upload files": 2,
        "upload chunks": 2,
        "upload rejected rows": 1,
        "uploads": 1,
        "idempotency keys": 1,
        "audit entries": 1,
        "notifications delivered": 1,
        "notifications failed": 1,
    }
    assert await count(app, Upload) == 3
    assert await count(app, UploadChunk, UploadChunk.upload_id == recent_file) == 1
    assert await count(app, UploadChunk, UploadChunk.upload_id == running) == 1
    assert await count(app, UploadChunk, UploadChunk.upload_id == old_file) == 0
    assert await count(app, UploadRowError, UploadRowError.upload_id == old_file) == 1
    assert await count(app, Upload, Upload.content_deleted_at.is_not(None)) == 1
    shown = (await client.get(f"/uploads/{old_file}")).json()
    assert (shown["rows_total"], shown["rows_rejected"]) == (2, 1)
    assert shown["content_deleted_at"] is not None
    assert (await client.get(f"/uploads/{recent_file}")).json()["content_deleted_at"] is None
    remaining = select(Notification.id).order_by(Notification.created_at)
    async with app.state.database.request_sessions() as session:
        assert set(await session.scalars(remaining)) == {delivered_young, owed}
    assert await count(app, IdempotencyKey) == 1
    assert await count(app, AuditEntry) == audit_total - 1
    assert await count(app, User) == 7  # users are never pruned
    # Nothing is left to do: a second run deletes nothing.
    again = await prune(app.state.database.task_engine, settings, now=utcnow())
    assert set(again.values()) == {0}


@pytest.mark.parametrize("settings_overrides", [{"prune_batch_size": 2}])
async def test_prune_works_in_batches_of_the_size_set(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    user = (await client.post("/signups", json={"email": "u@example.com", "name": "U"})).json()
    ids = [await notify(client, user["id"]) for _ in range(5)]
    for notification_id in ids:
        await backdate(app, Notification, notification_id, succeeded_at=utcnow() - 100 * DAY)

    report = await prune(app.state.database.task_engine, settings, now=utcnow())

    assert report["notifications delivered"] == 5
    assert await count(app, Notification) == 0


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "upload_batch_rows": 3,
            "upload_content_retention_days": 0,
            "upload_retention_days": 0,
            "prune_batch_size": 1,
        }
    ],
)
async def test_a_prune_racing_an_import_never_deletes_what_the_import_still_reads(
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done_before = await post_upload(client, "old@example.com,Old")  # settled: prunable at once

    async def not_now(_upload_id: uuid.UUID) -> None:
        return None

    monkeypatch.setattr(uploads_router, "import_csv", not_now)
    rows = [f"user{n}@example.com,User {n}" for n in range(60)] + ["bad,Bad"]
    racing = await post_upload(client, *rows)
    importing = asyncio.create_task(run_task(CSV_IMPORT, racing))
    pruned: dict[str, int] = {}
    prunes_mid_import = 0
    while not importing.done():
        report = await prune(app.state.database.task_engine, settings, now=utcnow())
        pruned = {what: pruned.get(what, 0) + n for what, n in report.items()}
        running = Upload.status == TaskStatus.RUNNING
        prunes_mid_import += await count(app, Upload, Upload.id == racing, running)
        await asyncio.sleep(0)

    assert await importing is TaskStatus.SUCCEEDED
    assert prunes_mid_import >= 1
    upload = await count(app, Upload, Upload.id == racing, Upload.rows_imported == 60)
    assert upload == 1
    assert await count(app, User) == 61
    assert pruned["uploads"] >= 1  # the settled upload went meanwhile
    assert await count(app, Upload, Upload.id == done_before) == 0
    # Settled now, the raced upload is past its (zero) retention too.
    await prune(app.state.database.task_engine, settings, now=utcnow())
    assert await count(app, Upload) == 0
    assert await count(app, UploadChunk) == 0


def test_the_prune_command_prints_what_it_deleted(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "DATA_DIR": str(tmp_path), "LOG_LEVEL": "WARNING"}

    def prune_command() -> dict[str, int]:
        result = subprocess.run(
            [sys.executable, "-m", "app", "prune"],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        header, *rows = result.stdout.splitlines()
        assert header.split() == ["deleted", "rows"]
        return {row.rsplit(maxsplit=1)[0].strip(): int(row.split()[-1]) for row in rows}

    assert set(prune_command().values()) == {0}  # the first run made the embedded database
    with sqlite3.connect(tmp_path / "signup-service.db") as database:
        database.execute(
            "INSERT INTO audit_entries (id, occurred_at, actor, action, resource, details) "
            "VALUES ('00000000000000000000000000000001', '2020-01-01 00:00:00.000000', "
            "'cron', 'test', 'nothing', '{}')"
        )

    deleted = prune_command()

    assert deleted["audit entries"] == 1
    assert sum(deleted.values()) == 1
