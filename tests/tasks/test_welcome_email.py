"""The welcome task under the contract: retries, failures, timeouts, concurrency, injection."""

import asyncio
import io
import logging
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.core.logging import LogFormatter
from app.integrations.mailer import Mailer
from app.models import AuditEntry, User
from app.models.base import TaskStatus, utcnow
from app.repositories import users as users_repo
from app.tasks.runtime import current
from app.tasks.welcome_email import WELCOME_EMAIL, send_welcome_email
from tests.support.postgres import free_port
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually


async def sign_up(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def welcome_state(client: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    state: dict[str, Any] = (await client.get(f"/users/{user_id}")).json()["welcome_email"]
    return state


async def insert_pending_user(app: FastAPI, email: str, name: str) -> uuid.UUID:
    """A user owing a welcome email, with no task scheduled (as after a crash)."""
    async with app.state.database.request_sessions() as session, session.begin():
        user = await users_repo.insert(session, email=email, name=name, now=utcnow())
        assert user is not None
        return user.id


async def test_two_451_replies_then_250_succeed_after_three_attempts(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    smtp.reply_to_data("451 4.3.0 busy", "451 4.3.0 still busy")

    user = await sign_up(client)

    state = await welcome_state(client, user["id"])
    assert state["status"] == "succeeded"
    assert state["attempts"] == 3
    assert state["last_error"] is None
    assert len(smtp.messages) == 1
    assert smtp.data_commands == 3


async def test_every_attempt_of_one_welcome_email_carries_the_same_message_id(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    """A receiver that took an attempt we counted as failed drops the retry by its id."""
    smtp.reply_to_data("451 4.3.0 busy", "451 4.3.0 still busy")

    user = await sign_up(client)

    ids = [attempt.message_id for attempt in smtp.attempted]
    assert ids == [f"<welcome.{user['id']}.1@signup-service.localhost>"] * 3


async def test_550_fails_after_one_attempt_keeping_the_reply(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    smtp.reply_to_data("550 5.1.1 no such mailbox")

    user = await sign_up(client)

    state = await welcome_state(client, user["id"])
    assert state["status"] == "failed"
    assert state["attempts"] == 1
    assert "550" in state["last_error"]
    assert "no such mailbox" in state["last_error"]
    assert smtp.messages == []


async def test_recipient_refused_with_550_fails_permanently(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    smtp.reply_to_rcpt("550 5.1.1 user unknown")

    user = await sign_up(client)

    state = await welcome_state(client, user["id"])
    assert state["status"] == "failed"
    assert state["attempts"] == 1
    assert "user unknown" in state["last_error"]


@pytest.mark.parametrize("settings_overrides", [{"task_max_attempts": 2}])
async def test_transient_errors_fail_once_attempts_are_exhausted(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    smtp.reply_to_data("451 4.3.0 busy", "452 4.3.1 out of space")

    user = await sign_up(client)

    state = await welcome_state(client, user["id"])
    assert state["status"] == "failed"
    assert state["attempts"] == 2
    assert "452" in state["last_error"]


@pytest.mark.parametrize(
    "settings_overrides",
    [{"smtp_port": free_port(), "task_inline_retry_seconds": 0, "task_backoff_base_seconds": 5}],
)
async def test_smtp_server_down_leaves_the_email_retrying_and_raises_nothing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})

    assert response.status_code == 201
    state = await welcome_state(client, response.json()["id"])
    assert state["status"] == "retrying"
    assert state["attempts"] == 1
    assert "connect" in state["last_error"].lower()
    assert state["next_attempt_at"] is not None


@pytest.mark.parametrize(
    "settings_overrides",
    [{"task_timeout_seconds": 0.3, "task_backoff_max_seconds": 0.01}],
)
async def test_a_send_over_its_timeout_is_retried_and_the_next_attempt_succeeds(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    smtp.stall(count=1)  # the first DATA gets no answer: that attempt hits its timeout

    user = await sign_up(client)

    state = await welcome_state(client, user["id"])
    assert state["status"] == "succeeded"
    assert state["attempts"] == 2
    assert smtp.data_commands == 2
    assert len(smtp.messages) == 1


async def test_two_concurrent_runs_for_one_user_send_one_message(
    app: FastAPI, smtp: SMTPServer
) -> None:
    user_id = await insert_pending_user(app, "ada@example.com", "Ada")
    smtp.set_delay(0.2)  # keep the first send in flight while the second run tries

    await asyncio.gather(send_welcome_email(user_id), send_welcome_email(user_id))

    assert len(smtp.messages) == 1
    async with app.state.database.request_sessions() as session:
        user = await session.get(User, user_id)
    assert user is not None
    assert user.welcome_status is TaskStatus.SUCCEEDED
    assert user.welcome_attempts == 1


async def test_a_crlf_name_injects_no_header(app: FastAPI, smtp: SMTPServer) -> None:
    """The API refuses such names, but a row can come from elsewhere: the mail stays safe."""
    user_id = await insert_pending_user(
        app, "ada@example.com", "Eve\r\nBcc: mallory@example.com\r\nSubject: pwned"
    )

    await send_welcome_email(user_id)

    [received] = smtp.messages
    assert received.rcpt_tos == ["ada@example.com"]
    message = received.message
    assert sorted(message.keys()) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"]
    )
    assert message["Subject"] == "Welcome to Signup Service"
    assert "mallory" not in str(message["To"])


async def test_an_exception_in_the_welcome_task_does_not_stop_the_audit_task_after_it(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(self: Mailer, message: object) -> None:
        raise RuntimeError("bug in the mailer")

    monkeypatch.setattr(Mailer, "send", explode)

    user = await sign_up(client)

    async with app.state.database.request_sessions() as session:
        actions = (await session.scalars(select(AuditEntry.action))).all()
    assert actions == ["user.signed_up"]
    state = await welcome_state(client, user["id"])
    assert state["status"] in ("retrying", "failed")
    assert "RuntimeError: bug in the mailer" in state["last_error"]


async def test_a_deleted_user_is_not_sent_anything(app: FastAPI, smtp: SMTPServer) -> None:
    user_id = await insert_pending_user(app, "ada@example.com", "Ada")
    async with app.state.database.request_sessions() as session, session.begin():
        await users_repo.delete_by_id(session, user_id)

    await send_welcome_email(user_id)

    assert smtp.data_commands == 0


@pytest.mark.parametrize("settings_overrides", [{"smtp_pool_size": 1, "task_backlog_limit": 1}])
async def test_past_the_backlog_limit_work_waits_in_the_database_not_in_memory(
    app: FastAPI, smtp: SMTPServer
) -> None:
    user_ids = [await insert_pending_user(app, f"u{n}@example.com", "U") for n in range(3)]
    smtp.set_delay(0.1)

    # The first run takes the only slot, the second is queued for it, the third finds
    # the backlog full and leaves its row pending for recovery.
    statuses = await asyncio.gather(*(send_welcome_email(user_id) for user_id in user_ids))
    await eventually(lambda: len(smtp.messages) == 2, what="the queued email sent")

    assert statuses == [TaskStatus.SUCCEEDED, None, None]
    assert current().limiters.of(WELCOME_EMAIL).drainer is None
    async with app.state.database.request_sessions() as session:
        last = await session.get(User, user_ids[2])
    assert last is not None
    assert (last.welcome_status, last.welcome_attempts) == (TaskStatus.PENDING, 0)


async def test_a_stored_address_that_needs_smtputf8_fails_at_once_without_a_traceback(
    app: FastAPI, smtp: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Such addresses are refused now; one stored before fails once, with its reason."""
    user_id = await insert_pending_user(app, "josé@example.com", "José")

    status = await send_welcome_email(user_id)

    assert status is TaskStatus.FAILED
    async with app.state.database.request_sessions() as session:
        user = await session.get(User, user_id)
    assert user is not None
    assert user.welcome_attempts == 1
    assert "cannot be sent without SMTPUTF8" in (user.welcome_last_error or "")
    assert smtp.data_commands == 0
    assert not [record for record in caplog.records if record.exc_info]


async def test_a_mail_servers_reply_naming_the_recipient_is_logged_without_the_address(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    """Logs carry ids: the reply is kept in last_error, and masked in the log."""
    smtp.reply_to_rcpt("550 5.1.1 <ada@example.com>: Recipient address rejected")
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(LogFormatter(json_lines=False))
    logging.getLogger().addHandler(handler)
    try:
        user = await sign_up(client)
    finally:
        logging.getLogger().removeHandler(handler)

    state = await welcome_state(client, user["id"])
    assert "<ada@example.com>" in state["last_error"]
    log = written.getvalue()
    assert "task failed" in log
    assert f"row_id={user['id']}" in log
    assert "ada@example.com" not in log
