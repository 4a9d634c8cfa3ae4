"""POST /users/{id}/notifications, GET /notifications/{id}, GET /users/{id}/notifications."""

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.models.base import utcnow
from app.repositories import users as users_repo
from tests.support.notify import (
    LOOPBACK_WEBHOOKS,
    count_notifications,
    notification,
    notify,
    sign_up,
    sign_up_with_webhook,
)
from tests.support.smtp import SMTPServer
from tests.support.webhooks import WebhookReceiver

PROBLEM = "application/problem+json"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(LOOPBACK_WEBHOOKS)


async def test_a_notification_is_accepted_with_202_its_state_and_location(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)

    response = await notify(client, user["id"], subject="Hello", body="World")

    assert response.status_code == 202
    body = response.json()
    assert response.headers["location"] == f"/notifications/{body['id']}"
    assert {k: body[k] for k in ("user_id", "channel", "subject", "body")} == {
        "user_id": user["id"],
        "channel": "webhook",
        "subject": "Hello",
        "body": "World",
    }
    # The first answer, given before the delivery ran.
    assert (body["status"], body["attempts"]) == ("pending", 0)
    assert body["next_attempt_at"] == body["created_at"]
    assert body["succeeded_at"] is None
    assert body["last_error"] is None


async def test_the_location_shows_the_delivered_notification(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    response = await notify(client, user["id"])

    shown = (await client.get(response.headers["location"])).json()

    assert shown["status"] == "succeeded"
    assert shown["attempts"] == 1
    assert shown["succeeded_at"] >= shown["created_at"]
    assert shown["next_attempt_at"] is None


async def test_an_unknown_user_is_404_and_nothing_is_written(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver
) -> None:
    response = await notify(client, str(uuid.uuid4()), channel="email")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/user-not-found"
    assert await count_notifications(app) == 0


async def test_the_webhook_channel_without_a_webhook_url_is_409_and_nothing_is_written(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver
) -> None:
    user = await sign_up(client)

    response = await notify(client, user["id"], channel="webhook")

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/webhook-not-configured"
    assert await count_notifications(app) == 0
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"channel": "sms", "subject": "s", "body": "b"}, "channel"),
        ({"subject": "s", "body": "b"}, "channel"),
        ({"channel": "email", "subject": "", "body": "b"}, "subject"),
        ({"channel": "email", "subject": "x" * 201, "body": "b"}, "subject"),
        ({"channel": "email", "subject": "Hi\r\nBcc: eve@example.com", "body": "b"}, "subject"),
        ({"channel": "email", "subject": "s", "body": ""}, "body"),
        ({"channel": "email", "subject": "s", "body": "x" * 10_001}, "body"),
        ({"channel": "email", "subject": "s", "body": "b", "to": "eve@example.com"}, "to"),
    ],
)
async def test_an_invalid_notification_is_422_naming_the_field(
    client: httpx.AsyncClient, app: FastAPI, payload: dict[str, Any], field: str
) -> None:
    user = await sign_up(client)

    response = await client.post(f"/users/{user['id']}/notifications", json=payload)

    assert response.status_code == 422
    assert ["body", field] in [error["loc"][:2] for error in response.json()["errors"]]
    assert await count_notifications(app) == 0


async def test_an_unknown_notification_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/notifications/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.json()["type"] == "/problems/notification-not-found"


async def test_a_users_notifications_are_listed_newest_first_a_page_at_a_time(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    user = await sign_up(client)
    other = await sign_up(client, "bob@example.com")
    await notify(client, other["id"], channel="email")
    sent = [(await notify(client, user["id"], "email", f"n{n}")).json()["id"] for n in range(5)]

    first = (await client.get(f"/users/{user['id']}/notifications?limit=2")).json()
    pages = [first]
    while pages[-1]["next_cursor"]:
        cursor = pages[-1]["next_cursor"]
        url = f"/users/{user['id']}/notifications?limit=2&cursor={cursor}"
        pages.append((await client.get(url)).json())

    listed = [item["id"] for page in pages for item in page["items"]]
    assert listed == list(reversed(sent))
    assert [len(page["items"]) for page in pages] == [2, 2, 1]


async def test_listing_for_an_unknown_user_is_404_and_a_malformed_cursor_is_422(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)

    unknown = await client.get(f"/users/{uuid.uuid4()}/notifications")
    bad_cursor = await client.get(f"/users/{user['id']}/notifications?cursor=garbage")

    assert unknown.status_code == 404
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["errors"][0]["loc"] == ["query", "cursor"]


async def test_the_same_idempotency_key_and_body_replay_the_first_response_and_send_once(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    headers = {"Idempotency-Key": "notify-1"}

    first = await notify(client, user["id"], headers=headers)
    again = await notify(client, user["id"], headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert await count_notifications(app) == 1
    assert len(receiver.requests) == 1


async def test_the_same_idempotency_key_with_another_body_or_user_is_422(
    client: httpx.AsyncClient, app: FastAPI, smtp: SMTPServer
) -> None:
    ada = await sign_up(client)
    bob = await sign_up(client, "bob@example.com")
    headers = {"Idempotency-Key": "notify-2"}
    await notify(client, ada["id"], "email", headers=headers)

    other_body = await notify(client, ada["id"], "email", subject="Other", headers=headers)
    other_user = await notify(client, bob["id"], "email", headers=headers)

    for response in (other_body, other_user):
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/idempotency-key-reused"
    assert await count_notifications(app) == 1


async def test_a_refused_notification_releases_its_idempotency_key(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver
) -> None:
    user = await sign_up(client)
    headers = {"Idempotency-Key": "notify-3"}
    refused = await notify(client, user["id"], "webhook", headers=headers)
    await client.patch(f"/users/{user['id']}", json={"webhook_url": receiver.url})

    accepted = await notify(client, user["id"], "webhook", headers=headers)

    assert refused.status_code == 409
    assert accepted.status_code == 202
    assert "idempotent-replayed" not in accepted.headers


async def test_deleting_a_user_deletes_their_notifications(
    client: httpx.AsyncClient, app: FastAPI, smtp: SMTPServer
) -> None:
    user = await sign_up(client)
    created = (await notify(client, user["id"], "email")).json()

    await client.delete(f"/users/{user['id']}")

    assert (await client.get(f"/notifications/{created['id']}")).status_code == 404
    assert await count_notifications(app) == 0


async def test_an_email_notification_is_delivered_by_the_shared_mailer(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    user = await sign_up(client)

    created = (await notify(client, user["id"], "email", "Report ready", "Line 1\nLine 2")).json()

    shown = await notification(client, created["id"])
    assert shown["status"] == "succeeded"
    _welcome, sent = smtp.messages
    assert sent.rcpt_tos == ["ada@example.com"]
    assert sent.message["Subject"] == "Report ready"
    assert sent.message_id == f"<notification.{created['id']}@signup-service.localhost>"
    text = sent.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.splitlines() == ["Line 1", "Line 2"]


@pytest.mark.parametrize(
    "subject",
    [
        "=?utf-8?q?Hi=0D=0ABcc:_victim@example.com?=",
        "=?utf-8?b?SGkNCkJjYzogdmljdGltQGV4YW1wbGUuY29t?=",
        "Plain, then =?iso-8859-1?q?caf=E9?=",  # harmless, but not what mail readers would show
    ],
)
async def test_an_email_subject_holding_an_encoded_word_is_422_and_nothing_is_written(
    client: httpx.AsyncClient, app: FastAPI, smtp: SMTPServer, subject: str
) -> None:
    user = await sign_up(client)

    response = await notify(client, user["id"], "email", subject=subject)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/not-sendable-by-email"
    assert "encoded word" in response.json()["detail"]
    assert await count_notifications(app) == 0
    assert len(smtp.messages) == 1  # the welcome email


async def test_the_same_subject_by_webhook_is_data_and_is_accepted(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)

    response = await notify(client, user["id"], "webhook", subject="=?utf-8?q?Hi=0D=0A?=")

    assert response.status_code == 202


async def test_notifying_a_user_whose_stored_address_cannot_be_mailed_is_422(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Addresses like this are refused now; a user stored before gets a clear answer."""
    async with app.state.database.request_sessions() as session, session.begin():
        user = await users_repo.insert(session, email="josé@example.com", name="José", now=utcnow())
        assert user is not None

    response = await notify(client, str(user.id), "email")

    assert response.status_code == 422
    assert response.json()["type"] == "/problems/not-sendable-by-email"
    assert "SMTPUTF8" in response.json()["detail"]
    assert await count_notifications(app) == 0
