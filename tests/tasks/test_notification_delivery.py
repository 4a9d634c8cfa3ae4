"""Notification delivery under the contract, to a real receiver on loopback and a real SMTP server.

Through the API with the in-process client, a request's background delivery
(and its inline retries) has run when the call returns.
"""

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.integrations.webhooks import new_secret
from app.models import Channel, Notification, User
from app.models.base import TaskStatus, utcnow
from app.repositories import notifications as notifications_repo
from app.tasks.notifications import deliver_notification
from app.tasks.recovery import recover_once
from app.tasks.runtime import current
from tests.support.notify import (
    LOOPBACK_WEBHOOKS,
    notification,
    notify,
    sign_up,
    sign_up_with_webhook,
)
from tests.support.postgres import free_port
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually_async
from tests.support.webhooks import Reply, WebhookReceiver


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(LOOPBACK_WEBHOOKS)


async def insert_notification(app: FastAPI, user_id: str, channel: Channel) -> uuid.UUID:
    """A notification owed, with no task scheduled for it (as after a crash)."""
    async with app.state.database.request_sessions() as session, session.begin():
        created = await notifications_repo.insert_pending(
            session,
            user_id=uuid.UUID(user_id),
            channel=channel,
            subject="Queued",
            body="Delivered later.",
            now=utcnow(),
        )
        return created.id


async def delivered(client: httpx.AsyncClient, receiver: WebhookReceiver) -> dict[str, Any]:
    """Sign up with the receiver as webhook endpoint, notify, and return the settled state."""
    user = await sign_up_with_webhook(client, receiver)
    created = await notify(client, user["id"])
    assert created.status_code == 202
    return await notification(client, created.json()["id"])


async def test_the_receiver_verifies_the_signature_with_the_secret_the_api_returned(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)

    created = (await notify(client, user["id"], subject="Hello", body="World")).json()

    [request] = receiver.requests
    assert request.verified
    assert request.headers["webhook-id"] == created["id"]
    assert request.headers["content-type"] == "application/json"
    assert request.payload == {
        "type": "user.notification",
        "timestamp": created["created_at"],
        "data": {
            "id": created["id"],
            "user_id": user["id"],
            "subject": "Hello",
            "body": "World",
        },
    }
    assert (await notification(client, created["id"]))["status"] == "succeeded"


async def test_500_500_200_succeeds_after_three_attempts_with_one_webhook_id(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    receiver.reply_with(500, 500, 200)

    state = await delivered(client, receiver)

    assert (state["status"], state["attempts"]) == ("succeeded", 3)
    assert state["last_error"] is None
    assert [r.webhook_id for r in receiver.requests] == [state["id"]] * 3
    assert all(r.verified for r in receiver.requests)


async def test_410_fails_after_one_attempt_keeping_the_reply(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    receiver.reply_with(Reply(410, body=b"endpoint gone"))

    state = await delivered(client, receiver)

    assert (state["status"], state["attempts"]) == ("failed", 1)
    assert state["last_error"] == "HTTP 410: endpoint gone"
    assert state["failed_at"] is not None
    assert len(receiver.requests) == 1


async def test_a_reply_slower_than_the_timeout_is_retried_and_the_next_attempt_succeeds(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    receiver.reply_with(Reply(200, delay=3))  # the webhook timeout is 1s

    state = await delivered(client, receiver)

    assert (state["status"], state["attempts"]) == ("succeeded", 2)
    assert len(receiver.requests) == 2


@pytest.mark.parametrize(
    "settings_overrides",
    [{**LOOPBACK_WEBHOOKS, "task_backoff_max_seconds": 5, "task_inline_retry_seconds": 4}],
)
async def test_429_with_retry_after_waits_that_long_before_the_next_attempt(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    receiver.reply_with(Reply(429, headers={"Retry-After": "1"}))

    state = await delivered(client, receiver)

    assert (state["status"], state["attempts"]) == ("succeeded", 2)
    first, second = receiver.requests
    assert second.received_at - first.received_at >= 1.0


@pytest.mark.parametrize(
    "settings_overrides",
    [{**LOOPBACK_WEBHOOKS, "task_backoff_max_seconds": 30, "task_inline_retry_seconds": 0}],
)
async def test_a_retry_after_beyond_the_backoff_cap_is_held_to_the_cap(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    receiver.reply_with(Reply(429, headers={"Retry-After": "3600"}))
    before = utcnow()

    state = await delivered(client, receiver)

    assert (state["status"], state["attempts"]) == ("retrying", 1)
    assert state["last_error"].startswith("HTTP 429")
    due = datetime.fromisoformat(state["next_attempt_at"])
    assert before + timedelta(seconds=29) <= due <= utcnow() + timedelta(seconds=30)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed(
    client: httpx.AsyncClient, receiver: WebhookReceiver, status: int
) -> None:
    """Not followed, and failed at once: a receiver that moved must be set anew."""
    receiver.reply_with(Reply(status, headers={"Location": receiver.url_for("/elsewhere")}))

    state = await delivered(client, receiver)

    assert (state["status"], state["attempts"]) == ("failed", 1)
    assert "redirect" in state["last_error"]
    assert "not followed" in state["last_error"]
    assert [r.path for r in receiver.requests] == ["/hook"]


@pytest.mark.parametrize("settings_overrides", [{**LOOPBACK_WEBHOOKS, "task_max_attempts": 2}])
async def test_transient_failures_fail_once_attempts_are_exhausted_with_a_bounded_error(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    receiver.reply_with(Reply(503, body=b"busy " * 100_000), Reply(503, body=b"still busy"))

    state = await delivered(client, receiver)

    assert (state["status"], state["attempts"]) == ("failed", 2)
    assert state["last_error"] == "HTTP 503: still busy"


@pytest.mark.parametrize(
    "settings_overrides", [{**LOOPBACK_WEBHOOKS, "task_inline_retry_seconds": 0}]
)
async def test_a_receiver_that_is_down_leaves_the_notification_retrying(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    await client.patch(
        f"/users/{user['id']}", json={"webhook_url": f"http://127.0.0.1:{free_port()}/hook"}
    )

    created = await notify(client, user["id"])

    state = await notification(client, created.json()["id"])
    assert (state["status"], state["attempts"]) == ("retrying", 1)
    assert "connection failed" in state["last_error"]


async def test_a_notification_whose_user_removed_the_webhook_fails_without_a_request(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    notification_id = await insert_notification(app, user["id"], Channel.WEBHOOK)
    await client.patch(f"/users/{user['id']}", json={"webhook_url": None})

    status = await deliver_notification(Channel.WEBHOOK, notification_id)

    assert status is TaskStatus.FAILED
    state = await notification(client, str(notification_id))
    assert state["last_error"] == "the user has no webhook URL any more"
    assert receiver.requests == []


async def test_a_550_reply_fails_an_email_notification(
    client: httpx.AsyncClient, smtp: SMTPServer, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    smtp.reply_to_data("550 5.1.1 mailbox unavailable")

    created = await notify(client, user["id"], "email")

    state = await notification(client, created.json()["id"])
    assert (state["status"], state["attempts"]) == ("failed", 1)
    assert "550" in state["last_error"]


@pytest.mark.parametrize(
    "settings_overrides",
    [{**LOOPBACK_WEBHOOKS, "notification_webhook_concurrency": 2, "webhook_timeout_seconds": 5}],
)
async def test_each_channel_has_its_own_concurrency_limit(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver, smtp: SMTPServer
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    hooks = [await insert_notification(app, user["id"], Channel.WEBHOOK) for _ in range(6)]
    email = await insert_notification(app, user["id"], Channel.EMAIL)
    receiver.reply_with(*[Reply(200, delay=0.3)] * 6)

    # The first two take both webhook slots; the other four are queued for them.
    runs = [asyncio.create_task(deliver_notification(Channel.WEBHOOK, h)) for h in hooks]
    await asyncio.sleep(0)
    email_status = await deliver_notification(Channel.EMAIL, email)
    email_done = len(receiver.requests)
    statuses = await asyncio.gather(*runs)

    async def all_delivered() -> bool:
        async with app.state.database.request_sessions() as session:
            rows = [await session.get(Notification, hook) for hook in hooks]
            return all(row is not None and row.status is TaskStatus.SUCCEEDED for row in rows)

    await eventually_async(all_delivered, what="the six webhooks delivered")
    assert statuses == [TaskStatus.SUCCEEDED] * 2 + [None] * 4
    assert receiver.max_in_flight == 2
    # The email did not queue behind the webhooks: it was sent while they waited.
    assert email_status is TaskStatus.SUCCEEDED
    assert email_done < 6


async def test_two_concurrent_runs_for_one_notification_send_one_request(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    notification_id = await insert_notification(app, user["id"], Channel.WEBHOOK)
    receiver.reply_with(Reply(200, delay=0.2))

    await asyncio.gather(
        deliver_notification(Channel.WEBHOOK, notification_id),
        deliver_notification(Channel.WEBHOOK, notification_id),
    )

    assert len(receiver.requests) == 1


@pytest.mark.parametrize("settings_overrides", [{**LOOPBACK_WEBHOOKS, "recovery_grace_seconds": 0}])
async def test_recovery_delivers_notifications_no_task_was_scheduled_for(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver, smtp: SMTPServer
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    hook = await insert_notification(app, user["id"], Channel.WEBHOOK)
    await insert_notification(app, user["id"], Channel.EMAIL)

    report = await recover_once(current())

    assert report["notification_webhook"]["succeeded"] == 1
    assert report["notification_email"]["succeeded"] == 1
    assert [r.webhook_id for r in receiver.requests] == [str(hook)]
    assert len(smtp.messages) == 2  # the welcome email and the notification


async def test_a_failed_webhook_is_a_dead_letter_an_admin_can_retry(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    receiver.reply_with(404)
    state = await delivered(client, receiver)

    dead = (await client.get("/admin/tasks/failed?kind=notification_webhook")).json()
    retried = await client.post(f"/admin/tasks/notification_webhook/{state['id']}/retry")

    assert [item["id"] for item in dead["items"]] == [state["id"]]
    assert retried.status_code == 202
    after = await notification(client, state["id"])
    assert (after["status"], after["attempts"]) == ("succeeded", 1)
    assert [r.webhook_id for r in receiver.requests] == [state["id"]] * 2


@pytest.mark.parametrize("settings_overrides", [{"webhook_timeout_seconds": 1.0}])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"])
async def test_a_stored_url_pointing_inside_is_refused_at_delivery_without_a_request(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver, host: str
) -> None:
    """The row did not pass the check at set time (it came from elsewhere): the guard on
    the connection refuses it alone, before any byte reaches the receiver."""
    user = await sign_up(client)
    async with app.state.database.request_sessions() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == uuid.UUID(user["id"]))
            .values(webhook_url=receiver.url_for("/hook", host=host), webhook_secret=new_secret())
        )
    notification_id = await insert_notification(app, user["id"], Channel.WEBHOOK)

    status = await deliver_notification(Channel.WEBHOOK, notification_id)

    assert status is TaskStatus.FAILED
    state = await notification(client, str(notification_id))
    assert "refused at delivery" in state["last_error"]
    assert "loopback" in state["last_error"] or "IPv4-mapped" in state["last_error"]
    assert receiver.requests == []


async def test_a_notification_already_delivered_is_not_sent_again(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    notification_id = await insert_notification(app, user["id"], Channel.WEBHOOK)
    async with app.state.database.request_sessions() as session, session.begin():
        await session.execute(
            update(Notification)
            .where(Notification.id == notification_id)
            .values(status=TaskStatus.SUCCEEDED)
        )

    assert await deliver_notification(Channel.WEBHOOK, notification_id) is None
    assert receiver.requests == []


# Encoded words (RFC 2047) that decode to a line break and a header of their own.
ENCODED_HEADER_INJECTIONS = [
    "=?utf-8?q?Hi=0D=0ABcc:_victim@example.com?=",
    "=?UTF-8?Q?Hi=0D=0AReply-To:_eve@example.com?=",
    "Hello =?utf-8?b?DQpGcm9tOiBib3NzQGV4YW1wbGUuY29t?=",  # base64: \r\nFrom: boss@...
    "=?utf-8?q?Hi=0ABcc:_victim@example.com?=",  # a bare LF
]


@pytest.mark.parametrize("subject", ENCODED_HEADER_INJECTIONS)
async def test_a_stored_subject_whose_encoded_words_hide_a_header_is_never_sent(
    app: FastAPI, client: httpx.AsyncClient, smtp: SMTPServer, subject: str
) -> None:
    """The API refuses such subjects; one stored before fails at once, and no mail
    server ever receives the header it hides."""
    user = await sign_up(client)
    notification_id = await insert_notification(app, user["id"], Channel.EMAIL)
    async with app.state.database.request_sessions() as session, session.begin():
        await session.execute(
            update(Notification).where(Notification.id == notification_id).values(subject=subject)
        )

    status = await deliver_notification(Channel.EMAIL, notification_id)

    assert status is TaskStatus.FAILED
    state = await notification(client, str(notification_id))
    assert state["attempts"] == 1
    assert "encoded word" in state["last_error"]
    assert len(smtp.messages) == 1  # the welcome email only
    for received in smtp.messages:
        headers = [name.lower() for name in received.message]
        assert "bcc" not in headers
        assert "reply-to" not in headers
        assert headers.count("from") == 1


async def test_a_subject_is_sent_as_written_whatever_it_holds(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    """Read back from the message as the mail server received it."""
    user = await sign_up(client)
    subject = "Café =? naïve ?= 100% Bcc: nobody ✓ " + "long " * 30

    created = await notify(client, user["id"], "email", subject=subject.strip())

    assert (await notification(client, created.json()["id"]))["status"] == "succeeded"
    _welcome, sent = smtp.messages
    message = sent.message
    assert sorted(message.keys()) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"]
    )
    assert message["Subject"] == subject.strip()
