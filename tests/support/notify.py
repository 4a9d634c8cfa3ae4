"""API steps the notification tests share: users with a webhook endpoint, notifications."""

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.models import Notification
from tests.support.webhooks import WebhookReceiver

# What a test delivering to a receiver on loopback needs: the guard lifted, short timeouts.
LOOPBACK_WEBHOOKS: dict[str, Any] = {
    "webhook_allow_private_targets": True,
    "webhook_timeout_seconds": 1.0,
}


async def sign_up(
    client: httpx.AsyncClient, email: str = "ada@example.com", webhook_url: str | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"email": email, "name": "Ada"}
    if webhook_url is not None:
        payload["webhook_url"] = webhook_url
    response = await client.post("/signups", json=payload)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def sign_up_with_webhook(
    client: httpx.AsyncClient, receiver: WebhookReceiver, email: str = "ada@example.com"
) -> dict[str, Any]:
    """A user whose webhooks go to the receiver, which then verifies with their secret."""
    user = await sign_up(client, email, webhook_url=receiver.url)
    receiver.secret = user["webhook_secret"]
    return user


async def notify(
    client: httpx.AsyncClient,
    user_id: str,
    channel: str = "webhook",
    subject: str = "Your export is ready",
    body: str = "Download it within 24 hours.",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        f"/users/{user_id}/notifications",
        json={"channel": channel, "subject": subject, "body": body},
        headers=headers,
    )


async def notification(client: httpx.AsyncClient, notification_id: str) -> dict[str, Any]:
    response = await client.get(f"/notifications/{notification_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def count_notifications(app: FastAPI) -> int:
    async with app.state.database.request_sessions() as session:
        return len((await session.scalars(select(Notification.id))).all())
