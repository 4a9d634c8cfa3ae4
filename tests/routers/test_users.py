"""/users/{id}: read, delete, resend the welcome email."""

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.tasks.recovery import recover_once
from app.tasks.runtime import current
from tests.support.rows import insert_user
from tests.support.smtp import SMTPServer

PROBLEM = "application/problem+json"


async def sign_up(client: httpx.AsyncClient, email: str = "ada@example.com") -> dict[str, Any]:
    response = await client.post("/signups", json={"email": email, "name": "Ada"})
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def test_get_user_shows_the_welcome_email_status(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)

    response = await client.get(f"/users/{user['id']}")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user["id"]
    assert body["email"] == "ada@example.com"
    assert body["welcome_email"]["status"] == "succeeded"
    assert body["welcome_email"]["next_attempt_at"] is None


async def test_find_by_email_matches_the_address_as_signup_normalised_it(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client, "Ada@Example.com")
    await sign_up(client, "bob@example.com")

    response = await client.get("/users", params={"email": "  ADA@example.COM "})

    assert response.status_code == 200
    [found] = response.json()["items"]
    assert found["id"] == user["id"]
    assert found["email"] == "ada@example.com"
    assert found["welcome_email"]["status"] == "succeeded"


@pytest.mark.parametrize("email", ["ada@example.co", "da@example.com", "ada@example.com.evil"])
async def test_find_by_email_is_an_exact_match_and_finds_no_one_else(
    client: httpx.AsyncClient, email: str
) -> None:
    await sign_up(client, "ada@example.com")

    response = await client.get("/users", params={"email": email})

    assert response.status_code == 200
    assert response.json() == {"items": []}


@pytest.mark.parametrize("email", ["", "not-an-email", "ada@", "two@@example.com"])
async def test_find_by_email_with_an_invalid_address_is_422(
    client: httpx.AsyncClient, email: str
) -> None:
    response = await client.get("/users", params={"email": email})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["loc"] == ["query", "email"]


async def test_find_by_email_without_an_address_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/users")

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_unknown_user_is_404_problem(client: httpx.AsyncClient) -> None:
    user_id = uuid.uuid4()

    response = await client.get(f"/users/{user_id}")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "/problems/user-not-found",
        "title": "User not found",
        "status": 404,
        "detail": f"no user with id {user_id}",
        "instance": f"/users/{user_id}",
    }


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_malformed_user_id_is_422(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/users/not-a-uuid")

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "user_id"]


async def test_delete_user_answers_204_and_the_user_is_gone(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)

    deleted = await client.delete(f"/users/{user['id']}")

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get(f"/users/{user['id']}")).status_code == 404
    assert (await client.delete(f"/users/{user['id']}")).status_code == 404


async def test_deleted_email_can_sign_up_again(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    await client.delete(f"/users/{user['id']}")

    again = await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})

    assert again.status_code == 201
    assert again.json()["id"] != user["id"]


async def test_resend_after_success_sends_a_new_message_with_its_own_message_id(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    user = await sign_up(client)

    response = await client.post(f"/users/{user['id']}/welcome-email/resend")

    assert response.status_code == 202
    assert response.json()["welcome_email"]["status"] == "pending"
    assert response.json()["welcome_email"]["attempts"] == 0
    assert [m.message_id for m in smtp.messages] == [
        f"<welcome.{user['id']}.1@signup-service.localhost>",
        f"<welcome.{user['id']}.2@signup-service.localhost>",
    ]
    after = (await client.get(f"/users/{user['id']}")).json()["welcome_email"]
    assert after["status"] == "succeeded"
    assert after["attempts"] == 1


async def test_resend_after_permanent_failure_delivers(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    smtp.reply_to_data("550 5.1.1 mailbox unavailable")
    user = await sign_up(client)
    assert (await client.get(f"/users/{user['id']}")).json()["welcome_email"]["status"] == "failed"

    response = await client.post(f"/users/{user['id']}/welcome-email/resend")

    assert response.status_code == 202
    after = (await client.get(f"/users/{user['id']}")).json()["welcome_email"]
    assert after["status"] == "succeeded"
    assert after["last_error"] is None
    assert len(smtp.messages) == 1


@pytest.mark.parametrize("settings_overrides", [{"task_inline_retry_seconds": 0}])
async def test_resend_while_the_email_is_retrying_is_409(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    smtp.reply_to_data("451 4.3.0 try again later")
    user = await sign_up(client)
    assert (await client.get(f"/users/{user['id']}")).json()["welcome_email"]["status"] == (
        "retrying"
    )

    response = await client.post(f"/users/{user['id']}/welcome-email/resend")

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/welcome-email-in-progress"
    assert smtp.messages == []


async def test_resend_for_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(f"/users/{uuid.uuid4()}/welcome-email/resend")

    assert response.status_code == 404
    assert response.json()["type"] == "/problems/user-not-found"


async def insert_silent_user(app: FastAPI, email: str = "quiet@example.com") -> uuid.UUID:
    """A user imported with send_welcome=false: no welcome email owed, none ever sent."""
    return await insert_user(
        app, email, welcome_status=None, welcome_generation=0, welcome_next_attempt_at=None
    )


async def test_a_user_owing_no_welcome_email_shows_it_as_null_and_recovery_sends_none(
    client: httpx.AsyncClient, app: FastAPI, smtp: SMTPServer
) -> None:
    user_id = await insert_silent_user(app)

    report = await recover_once(current())
    body = (await client.get(f"/users/{user_id}")).json()

    assert body["welcome_email"] is None
    assert report["welcome_email"]["due"] == 0
    assert smtp.messages == []


async def test_resend_to_a_user_owing_no_welcome_email_sends_a_first_one(
    client: httpx.AsyncClient, app: FastAPI, smtp: SMTPServer
) -> None:
    user_id = await insert_silent_user(app)

    response = await client.post(f"/users/{user_id}/welcome-email/resend")

    assert response.status_code == 202
    assert response.json()["welcome_email"]["status"] == "pending"
    assert [m.message_id for m in smtp.messages] == [
        f"<welcome.{user_id}.1@signup-service.localhost>"
    ]
    after = (await client.get(f"/users/{user_id}")).json()["welcome_email"]
    assert after["status"] == "succeeded"
