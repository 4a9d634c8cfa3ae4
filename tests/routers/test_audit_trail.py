"""GET /admin/audit: every state change leaves an entry; filters, order and pages hold."""

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.models import AuditEntry
from app.models.base import utcnow
from app.repositories import audit as audit_repo
from app.schemas.audit import AuditEntryCreate
from app.tasks.audit import write_audit_entry
from tests.conftest import CLIENT_KEY_NAME
from tests.support.notify import LOOPBACK_WEBHOOKS, notification, notify, sign_up_with_webhook
from tests.support.smtp import SMTPServer
from tests.support.webhooks import WebhookReceiver


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return LOOPBACK_WEBHOOKS


async def trail(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/admin/audit", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def entries(app: FastAPI, count: int, *, start: Any = None, **fields: Any) -> list[str]:
    """`count` entries one second apart (oldest first), written as the background task does."""
    start = start or utcnow() - timedelta(hours=1)
    ids = []
    for n in range(count):
        entry = AuditEntryCreate(
            id=uuid.uuid4(),
            occurred_at=start + timedelta(seconds=n),
            actor=fields.get("actor", "anonymous"),
            action=fields.get("action", "user.signed_up"),
            resource=fields.get("resource", f"users/{n}"),
            request_id=None,
            client_address=None,
        )
        await write_audit_entry(entry)
        ids.append(str(entry.id))
    return ids


async def test_every_state_changing_endpoint_leaves_an_entry(
    client: httpx.AsyncClient, receiver: WebhookReceiver, smtp: SMTPServer
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    uid = user["id"]
    await client.patch(f"/users/{uid}", json={"webhook_url": receiver.url_for("/v2")})
    await client.post(f"/users/{uid}/webhook-secret/rotate")
    receiver.reply_with(404)
    created = (await notify(client, uid)).json()
    await client.post(f"/admin/tasks/notification_webhook/{created['id']}/retry")
    await client.patch(f"/users/{uid}", json={"webhook_url": None})
    await client.post(f"/users/{uid}/welcome-email/resend")
    await client.delete(f"/users/{uid}")

    listed = (await trail(client))["items"]

    # Every request sent the `client` fixture's key: its name is the actor.
    assert [(e["action"], e["resource"], e["actor"]) for e in reversed(listed)] == [
        ("user.signed_up", f"users/{uid}", CLIENT_KEY_NAME),
        ("user.webhook_set", f"users/{uid}", CLIENT_KEY_NAME),
        ("user.webhook_secret_rotated", f"users/{uid}", CLIENT_KEY_NAME),
        ("notification.created", f"notifications/{created['id']}", CLIENT_KEY_NAME),
        ("task.retried", f"tasks/notification_webhook/{created['id']}", CLIENT_KEY_NAME),
        ("user.webhook_removed", f"users/{uid}", CLIENT_KEY_NAME),
        ("user.welcome_email_resent", f"users/{uid}", CLIENT_KEY_NAME),
        ("user.deleted", f"users/{uid}", CLIENT_KEY_NAME),
    ]
    assert listed[4]["details"] == {"user_id": uid, "channel": "webhook"}
    assert all(e["request_id"] and e["client_address"] == "127.0.0.1" for e in listed)


async def test_no_entry_is_written_for_a_patch_that_changes_nothing_or_a_refused_request(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    await client.patch(f"/users/{user['id']}", json={"webhook_url": receiver.url})
    await client.patch(f"/users/{user['id']}", json={})
    await client.patch(f"/users/{user['id']}", json={"webhook_url": "file:///etc/passwd"})
    await client.post(f"/users/{uuid.uuid4()}/notifications", json={})

    assert [e["action"] for e in (await trail(client))["items"]] == ["user.signed_up"]


async def test_no_secret_ever_reaches_an_audit_entry(
    client: httpx.AsyncClient, app: FastAPI, receiver: WebhookReceiver
) -> None:
    user = await sign_up_with_webhook(client, receiver)
    rotated = (await client.post(f"/users/{user['id']}/webhook-secret/rotate")).json()

    text = (await client.get("/admin/audit")).text

    assert user["webhook_secret"] not in text
    assert rotated["webhook_secret"] not in text


async def test_filters_by_action_resource_and_actor_combine(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await entries(app, 2, action="user.deleted", resource="users/a")
    await entries(app, 1, action="user.deleted", resource="users/b", actor="admin")
    wanted = await entries(app, 1, action="task.retried", resource="users/a", actor="admin")

    by_action = await trail(client, action="user.deleted")
    by_resource = await trail(client, resource="users/a")
    by_actor = await trail(client, actor="admin")
    combined = await trail(client, actor="admin", resource="users/a")

    assert len(by_action["items"]) == 3
    assert len(by_resource["items"]) == 3
    assert len(by_actor["items"]) == 2
    assert [e["id"] for e in combined["items"]] == wanted


async def test_a_time_range_includes_since_and_excludes_until(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    start = utcnow().replace(microsecond=0) - timedelta(hours=1)
    ids = await entries(app, 5, start=start)

    inside = await trail(
        client,
        since=(start + timedelta(seconds=1)).isoformat(),
        until=(start + timedelta(seconds=3)).isoformat(),
    )

    assert [e["id"] for e in inside["items"]] == [ids[2], ids[1]]


async def test_entries_come_newest_first_a_page_at_a_time_without_gaps_or_repeats(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ids = await entries(app, 7)

    pages = [await trail(client, limit=3)]
    while pages[-1]["next_cursor"]:
        pages.append(await trail(client, limit=3, cursor=pages[-1]["next_cursor"]))

    assert [e["id"] for page in pages for e in page["items"]] == list(reversed(ids))
    assert [len(page["items"]) for page in pages] == [3, 3, 1]


async def test_entries_at_the_same_moment_are_paged_by_id(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    moment = utcnow()
    ids = [(await entries(app, 1, start=moment))[0] for _ in range(4)]

    first = await trail(client, limit=2)
    second = await trail(client, limit=2, cursor=first["next_cursor"])

    listed = [e["id"] for e in first["items"] + second["items"]]
    assert listed == sorted(ids, key=uuid.UUID, reverse=True)


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2026-01-01T00:00:00"},
        {"until": "2026-01-01"},
        {"until": "0.5"},
        {"since": "1795305600"},
        {"cursor": "garbage"},
    ],
    ids=["naive", "a-date", "a-number", "seconds", "cursor"],
)
async def test_a_time_that_is_not_rfc3339_with_an_offset_or_a_malformed_cursor_is_422(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/admin/audit", params=params)

    assert response.status_code == 422
    assert response.json()["type"] == "/problems/validation-error"
    assert response.json()["errors"][0]["loc"] == ["query", *params]


@pytest.mark.parametrize(
    ("params", "found"),
    [
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 0),
        ({"since": "0001-01-01T00:00:00+01:00"}, 1),  # before year 1 in UTC: before everything
        ({"until": "0001-01-01T00:00:00+01:00"}, 0),
        ({"until": "9999-12-31T23:00:00-05:00"}, 1),  # after year 9999 in UTC: after everything
    ],
    ids=["empty-range", "since-before-year-1", "until-before-year-1", "until-after-9999"],
)
async def test_any_rfc3339_range_is_a_filter_even_an_empty_or_unbounded_one(
    client: httpx.AsyncClient, app: FastAPI, params: dict[str, str], found: int
) -> None:
    await entries(app, 1, start=utcnow())

    response = await client.get("/admin/audit", params=params)

    assert response.status_code == 200
    assert len(response.json()["items"]) == found


async def test_a_failing_audit_write_does_not_affect_the_response_or_the_delivery(
    client: httpx.AsyncClient,
    app: FastAPI,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object) -> None:
        raise ConnectionError("audit store down")

    monkeypatch.setattr(audit_repo, "add_many", broken)
    user = await sign_up_with_webhook(client, receiver)

    created = await notify(client, user["id"])
    rotated = await client.post(f"/users/{user['id']}/webhook-secret/rotate")

    assert created.status_code == 202
    assert rotated.status_code == 200
    assert (await notification(client, created.json()["id"]))["status"] == "succeeded"
    assert len(receiver.requests) == 1
    assert caplog.text.count("audit entry not written") == 3
    async with app.state.database.request_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 0
