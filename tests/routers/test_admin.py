"""/admin and /metrics: task overview, dead letters, retry, metrics (who may call: test_auth)."""

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.models import AuditEntry
from app.models.base import TaskStatus
from tests.conftest import CLIENT_KEY_NAME
from tests.support.rows import get_user, insert_user
from tests.support.smtp import SMTPServer


async def sign_up(client: httpx.AsyncClient, email: str) -> str:
    response = await client.post("/signups", json={"email": email, "name": "Ada"})
    assert response.status_code == 201
    user_id: str = response.json()["id"]
    return user_id


async def fail_signups(client: httpx.AsyncClient, smtp: SMTPServer, count: int) -> list[str]:
    smtp.reply_to_data(*["550 5.1.1 no such mailbox"] * count)
    return [await sign_up(client, f"gone{n}@example.com") for n in range(count)]


async def test_overview_counts_each_status_and_the_due_backlog(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    await sign_up(client, "ok@example.com")
    await fail_signups(client, smtp, 2)

    response = await client.get("/admin/tasks")

    assert response.status_code == 200
    kinds = {kind["kind"]: kind for kind in response.json()["kinds"]}
    assert list(kinds) == [
        "welcome_email", "csv_import", "notification_email", "notification_webhook"
    ]  # fmt: skip
    assert kinds["welcome_email"] == {
        "kind": "welcome_email",
        "counts": {"pending": 0, "running": 0, "retrying": 0, "succeeded": 1, "failed": 2},
        "succeeded_is_estimate": False,
        "due": 0,
        "oldest_due_age_seconds": None,
    }
    for other in ("csv_import", "notification_email", "notification_webhook"):
        assert sum(kinds[other]["counts"].values()) == 0


async def test_dead_letters_are_listed_newest_first_a_page_at_a_time(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    failed = await fail_signups(client, smtp, 3)

    first = (await client.get("/admin/tasks/failed?limit=2")).json()
    second = (await client.get(f"/admin/tasks/failed?limit=2&cursor={first['next_cursor']}")).json()

    listed = [item["id"] for item in first["items"] + second["items"]]
    assert listed == list(reversed(failed))
    assert second["next_cursor"] is None
    item = first["items"][0]
    assert item["kind"] == "welcome_email"
    assert item["status"] == "failed"
    assert item["attempts"] == 1
    assert "550" in item["last_error"]
    assert item["failed_at"] >= item["created_at"]


async def test_dead_letters_filter_by_kind(client: httpx.AsyncClient, smtp: SMTPServer) -> None:
    await fail_signups(client, smtp, 1)

    mine = await client.get("/admin/tasks/failed?kind=welcome_email")
    unknown = await client.get("/admin/tasks/failed?kind=nope")

    assert len(mine.json()["items"]) == 1
    assert unknown.status_code == 422
    assert unknown.json()["type"] == "/problems/validation-error"
    assert unknown.json()["errors"][0]["loc"] == ["query", "kind"]


@pytest.mark.parametrize("cursor", ["garbage", "Zm9vfGJhcg", "A" * 30, "A" * 32, "A" * 30 + "="])
async def test_a_cursor_of_another_shape_is_422(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get(f"/admin/tasks/failed?cursor={cursor}")

    assert response.status_code == 422
    assert response.json()["type"] == "/problems/validation-error"
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize("cursor", ["A" * 31, "_" * 31])
async def test_any_cursor_of_the_documented_shape_is_a_position(
    client: httpx.AsyncClient, smtp: SMTPServer, cursor: str
) -> None:
    """The earliest and the latest position there are: before and after every failure."""
    await fail_signups(client, smtp, 1)

    response = await client.get(f"/admin/tasks/failed?cursor={cursor}")

    assert response.status_code == 200
    assert len(response.json()["items"]) == (0 if cursor[0] == "A" else 1)


async def test_retrying_a_failed_task_rearms_it_and_it_then_succeeds(
    client: httpx.AsyncClient, smtp: SMTPServer, app: FastAPI
) -> None:
    [user_id] = await fail_signups(client, smtp, 1)

    response = await client.post(f"/admin/tasks/welcome_email/{user_id}/retry")

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert response.json()["attempts"] == 0
    user = await get_user(app, uuid.UUID(user_id))
    assert user.welcome_status is TaskStatus.SUCCEEDED
    assert [m.rcpt_tos for m in smtp.messages] == [["gone0@example.com"]]
    async with app.state.database.request_sessions() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "task.retried"))
    assert entry is not None
    assert (entry.actor, entry.resource) == (CLIENT_KEY_NAME, f"tasks/welcome_email/{user_id}")


async def test_retrying_a_task_that_has_not_failed_is_409(client: httpx.AsyncClient) -> None:
    user_id = await sign_up(client, "ok@example.com")

    response = await client.post(f"/admin/tasks/welcome_email/{user_id}/retry")

    assert response.status_code == 409
    assert response.json()["type"] == "/problems/task-not-failed"


async def test_retrying_an_unknown_task_is_404_and_an_unknown_kind_422(
    client: httpx.AsyncClient,
) -> None:
    unknown_id = "00000000-0000-4000-8000-000000000000"

    no_task = await client.post(f"/admin/tasks/welcome_email/{unknown_id}/retry")
    no_kind = await client.post(f"/admin/tasks/nope/{unknown_id}/retry")

    assert no_task.status_code == 404
    assert no_task.json()["type"] == "/problems/task-not-found"
    assert no_kind.status_code == 422
    assert no_kind.json()["errors"][0]["loc"] == ["path", "kind"]


async def test_metrics_show_counters_durations_backlog_and_recovery_passes(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    await sign_up(client, "ok@example.com")
    await fail_signups(client, smtp, 1)

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in [
        'signup_tasks_started_total{kind="welcome_email"}',
        'signup_tasks_succeeded_total{kind="welcome_email"}',
        'signup_tasks_failed_total{kind="welcome_email"}',
        'signup_tasks_retried_total{kind="welcome_email"}',
        'signup_task_duration_seconds_count{kind="welcome_email"}',
        'signup_tasks_due{kind="welcome_email"} 0.0',
        'signup_recovery_passes_total{kind="welcome_email"}',
    ]:
        assert line in text


async def test_users_owing_no_welcome_email_are_not_counted_as_tasks(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await sign_up(client, "ok@example.com")
    await insert_user(app, "quiet@example.com", welcome_status=None, welcome_generation=0)

    response = await client.get("/admin/tasks")

    welcome = next(kind for kind in response.json()["kinds"] if kind["kind"] == "welcome_email")
    assert sum(welcome["counts"].values()) == 1
