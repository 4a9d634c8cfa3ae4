"""Audit entries: written in the background for each state change, best-effort, idempotent."""

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select

from app.models import AuditEntry
from app.models.base import utcnow
from app.repositories import audit as audit_repo
from app.schemas.audit import AuditEntryCreate
from app.tasks.audit import write_audit_entry
from tests.conftest import CLIENT_KEY_NAME
from tests.support.smtp import SMTPServer


async def audit_entries(app: FastAPI) -> list[AuditEntry]:
    async with app.state.database.request_sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.occurred_at)))


async def test_signup_resend_and_delete_each_leave_an_audit_entry_naming_the_key(
    client: httpx.AsyncClient, anonymous_client: httpx.AsyncClient, app: FastAPI
) -> None:
    signup = await anonymous_client.post(
        "/signups", json={"email": "ada@example.com", "name": "Ada"}
    )
    user_id = signup.json()["id"]
    resend = await client.post(f"/users/{user_id}/welcome-email/resend")
    delete = await client.delete(f"/users/{user_id}")

    entries = await audit_entries(app)

    assert [(e.action, e.resource) for e in entries] == [
        ("user.signed_up", f"users/{user_id}"),
        ("user.welcome_email_resent", f"users/{user_id}"),
        ("user.deleted", f"users/{user_id}"),
    ]
    assert [e.request_id for e in entries] == [
        signup.headers["x-request-id"],
        resend.headers["x-request-id"],
        delete.headers["x-request-id"],
    ]
    assert [e.actor for e in entries] == ["anonymous", CLIENT_KEY_NAME, CLIENT_KEY_NAME]
    for entry in entries:
        assert entry.client_address == "127.0.0.1"
        assert entry.occurred_at <= utcnow()


async def test_failed_requests_leave_no_audit_entry(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await client.post("/signups", json={"email": "bad", "name": "Ada"})
    await client.delete(f"/users/{uuid.uuid4()}")

    assert await audit_entries(app) == []


async def test_writing_the_same_entry_twice_stores_it_once(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """Idempotent by its id: the second write is a no-op, not a failure."""
    entry = AuditEntryCreate(
        id=uuid.uuid4(),
        occurred_at=utcnow(),
        actor="anonymous",
        action="user.signed_up",
        resource="users/x",
        request_id="r1",
        client_address="127.0.0.1",
        details={"source": "test"},
    )

    await write_audit_entry(entry)
    await write_audit_entry(entry)

    async with app.state.database.request_sessions() as session:
        count = await session.scalar(select(func.count()).select_from(AuditEntry))
    assert count == 1
    assert "audit entry not written" not in caplog.text


async def test_a_failing_audit_write_does_not_affect_the_response_or_the_email(
    client: httpx.AsyncClient,
    smtp: SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object) -> None:
        raise ConnectionError("audit store down")

    monkeypatch.setattr(audit_repo, "add_many", broken)

    response = await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})

    assert response.status_code == 201
    assert len(smtp.messages) == 1
    assert "audit entry not written" in caplog.text


async def test_entries_written_about_the_same_time_go_in_one_insert(app: FastAPI) -> None:
    entries = [
        AuditEntryCreate(
            id=uuid.uuid4(),
            occurred_at=utcnow(),
            actor="anonymous",
            action="user.signed_up",
            resource=f"users/{n}",
            request_id=f"r{n}",
            client_address="127.0.0.1",
            details={},
        )
        for n in range(20)
    ]
    inserts: list[str] = []

    def count_inserts(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_ENTRIES"):
            inserts.append(statement)

    engine = app.state.database.task_engine.sync_engine
    event.listen(engine, "before_cursor_execute", count_inserts)
    try:
        await asyncio.gather(*(write_audit_entry(entry) for entry in entries))
    finally:
        event.remove(engine, "before_cursor_execute", count_inserts)

    assert len(inserts) == 1
    assert {entry.resource for entry in await audit_entries(app)} == {
        f"users/{n}" for n in range(20)
    }
