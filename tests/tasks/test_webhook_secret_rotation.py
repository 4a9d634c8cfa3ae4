"""Rotating a webhook secret without an outage: both secrets sign for a window, then the new one.

The receiver here is a strict one: it verifies each delivery with the secret it
has and answers 401 when none of the signatures matches, as a real receiver
does, and a 401 fails a notification for good.
"""

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.models import User
from app.models.base import utcnow
from tests.support.notify import LOOPBACK_WEBHOOKS, notification, notify, sign_up_with_webhook
from tests.support.webhooks import ReceivedWebhook, WebhookReceiver

DAY = 86_400


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(LOOPBACK_WEBHOOKS)


@pytest.fixture
def strict_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(reject_unverified=True) as server:
        yield server


async def rotate(client: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    response = await client.post(f"/users/{user_id}/webhook-secret/rotate")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def delivery_status(client: httpx.AsyncClient, user_id: str) -> str:
    created = await notify(client, user_id)
    assert created.status_code == 202, created.text
    status: str = (await notification(client, created.json()["id"]))["status"]
    return status


def signatures(request: ReceivedWebhook) -> list[str]:
    return request.headers["webhook-signature"].split(" ")


def verifies(secret: str, request: ReceivedWebhook) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


async def end_the_window(app: FastAPI, user_id: str) -> None:
    """The rotation window ran out (as it would a day later)."""
    async with app.state.database.request_sessions() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == uuid.UUID(user_id))
            .values(webhook_previous_secret_expires_at=utcnow() - timedelta(seconds=1))
        )


async def test_within_the_window_a_receiver_still_on_the_old_secret_accepts_deliveries(
    client: httpx.AsyncClient, strict_receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, strict_receiver)
    old = user["webhook_secret"]
    new = (await rotate(client, user["id"]))["webhook_secret"]

    status = await delivery_status(client, user["id"])  # the receiver has not switched yet

    assert status == "succeeded"
    [request] = strict_receiver.requests
    assert request.verified
    assert len(signatures(request)) == 2
    assert verifies(old, request)
    assert verifies(new, request)


async def test_after_the_window_only_the_new_secret_signs(
    client: httpx.AsyncClient, app: FastAPI, strict_receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, strict_receiver)
    old = user["webhook_secret"]
    new = (await rotate(client, user["id"]))["webhook_secret"]
    await end_the_window(app, user["id"])

    late = await delivery_status(client, user["id"])  # the receiver still has the old secret
    strict_receiver.secret = new
    switched = await delivery_status(client, user["id"])

    assert (late, switched) == ("failed", "succeeded")
    refused, accepted = strict_receiver.requests
    assert [len(signatures(r)) for r in (refused, accepted)] == [1, 1]
    assert not verifies(old, refused)
    assert verifies(new, refused)
    assert accepted.verified


async def test_the_rotate_response_and_the_user_say_when_the_old_secret_stops(
    client: httpx.AsyncClient, app: FastAPI, strict_receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, strict_receiver)
    before = utcnow()

    rotated = await rotate(client, user["id"])
    read = (await client.get(f"/users/{user['id']}")).json()
    await end_the_window(app, user["id"])
    after_the_window = (await client.get(f"/users/{user['id']}")).json()

    assert user["webhook_previous_secret_expires_at"] is None
    expires = rotated["webhook_previous_secret_expires_at"]
    assert expires == read["webhook_previous_secret_expires_at"]
    expected = before + timedelta(seconds=DAY)
    assert abs((datetime.fromisoformat(expires) - expected).total_seconds()) < 60
    assert after_the_window["webhook_previous_secret_expires_at"] is None


@pytest.mark.parametrize(
    "settings_overrides",
    [{**LOOPBACK_WEBHOOKS, "webhook_secret_rotation_window_seconds": 0}],
)
async def test_with_no_window_the_old_secret_stops_signing_at_once(
    client: httpx.AsyncClient, strict_receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, strict_receiver)
    rotated = await rotate(client, user["id"])

    status = await delivery_status(client, user["id"])

    assert rotated["webhook_previous_secret_expires_at"] is None
    assert status == "failed"
    [request] = strict_receiver.requests
    assert len(signatures(request)) == 1


async def test_a_second_rotation_keeps_only_the_secret_it_replaced(
    client: httpx.AsyncClient, strict_receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, strict_receiver)
    first = (await rotate(client, user["id"]))["webhook_secret"]
    second = (await rotate(client, user["id"]))["webhook_secret"]

    status = await delivery_status(client, user["id"])  # receiver on the original secret

    assert status == "failed"
    [request] = strict_receiver.requests
    assert len(signatures(request)) == 2
    assert verifies(second, request)
    assert verifies(first, request)
    assert not verifies(user["webhook_secret"], request)


async def test_a_new_webhook_url_starts_with_its_own_secret_alone(
    client: httpx.AsyncClient, strict_receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, strict_receiver)
    await rotate(client, user["id"])
    with WebhookReceiver(reject_unverified=True) as other:
        changed = await client.patch(f"/users/{user['id']}", json={"webhook_url": other.url})
        other.secret = changed.json()["webhook_secret"]

        status = await delivery_status(client, user["id"])

        assert changed.json()["webhook_previous_secret_expires_at"] is None
        assert status == "succeeded"
        [request] = other.requests
        assert len(signatures(request)) == 1
