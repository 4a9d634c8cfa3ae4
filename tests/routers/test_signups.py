"""POST /signups through HTTP, on SQLite and PostgreSQL, with a real SMTP server."""

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from app.models import IdempotencyKey, User
from app.models.base import utcnow
from tests.support.smtp import SMTPServer

PROBLEM = "application/problem+json"


async def count_users(app: FastAPI) -> int:
    async with app.state.database.request_sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def test_signup_answers_201_with_the_user_and_its_location(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/signups", json={"email": "Ada@Example.COM", "name": " Ada "})

    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/users/{body['id']}"
    assert body["email"] == "ada@example.com"
    assert body["name"] == "Ada"
    assert body["created_at"].endswith("Z")
    assert body["welcome_email"] == {
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": body["created_at"],
        "succeeded_at": None,
        "failed_at": None,
        "last_error": None,
    }


async def test_signup_delivers_exactly_one_welcome_message_with_to_subject_and_message_id(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    response = await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})
    user_id = response.json()["id"]

    [received] = smtp.messages
    assert received.rcpt_tos == ["ada@example.com"]
    message = received.message
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Welcome to Signup Service"
    assert received.message_id == f"<welcome.{user_id}.1@signup-service.localhost>"
    assert "Hello Ada" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert message.get_body(("html",)) is not None


async def test_background_task_sees_the_committed_user(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    """If the user were committed in a dependency teardown (after the background tasks
    since FastAPI 0.118), the task's claim would find no row: 0 attempts, still pending."""
    response = await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})

    user = (await client.get(response.headers["location"])).json()
    assert user["welcome_email"]["status"] == "succeeded"
    assert user["welcome_email"]["attempts"] == 1
    assert user["welcome_email"]["succeeded_at"] is not None
    assert len(smtp.messages) == 1


async def test_duplicate_email_in_other_case_is_409_and_sends_nothing_more(
    client: httpx.AsyncClient, smtp: SMTPServer, app: FastAPI
) -> None:
    await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})

    response = await client.post("/signups", json={"email": " ADA@example.com", "name": "Ada"})

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "/problems/email-already-registered",
        "title": "Email already registered",
        "status": 409,
        "detail": "ada@example.com is already registered",
        "instance": "/signups",
    }
    assert await count_users(app) == 1
    assert len(smtp.messages) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "name": "Ada"}, "email"),
        ({"email": "ada@", "name": "Ada"}, "email"),
        ({"email": "Ada <ada@example.com>", "name": "Ada"}, "email"),
        ({"email": "a" * 320 + "@example.com", "name": "Ada"}, "email"),
        ({"name": "Ada"}, "email"),
        ({"email": "ada@example.com"}, "name"),
        ({"email": "ada@example.com", "name": ""}, "name"),
        ({"email": "ada@example.com", "name": "   "}, "name"),
        ({"email": "ada@example.com", "name": "x" * 101}, "name"),
        ({"email": "ada@example.com", "name": "Eve\r\nBcc: mallory@example.com"}, "name"),
        ({"email": "ada@example.com", "name": "Bell\x07"}, "name"),
        ({"email": "ada@example.com", "name": "Line\u2028Separator"}, "name"),
        ({"email": "ada@example.com", "name": 42}, "name"),
        ({"email": "ada@example.com", "name": "Ada", "admin": True}, "admin"),
    ],
)
async def test_invalid_signup_is_422_problem_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
    smtp: SMTPServer,
    app: FastAPI,
    payload: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/signups", json=payload)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "/problems/validation-error"
    assert problem["status"] == 422
    assert ["body", field] in [error["loc"][:2] for error in problem["errors"]]
    assert await count_users(app) == 0
    assert smtp.messages == []


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"email": "ada@example.com", "name": ', "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b'["ada@example.com", "Ada"]', "application/json"),
        (b"null", "application/json"),
        (b"", "application/json"),
        (b"email=ada@example.com&name=Ada", "application/x-www-form-urlencoded"),
    ],
)
async def test_malformed_body_is_a_4xx_problem_never_500(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post(
        "/signups", content=content, headers={"content-type": content_type}
    )

    assert response.status_code in (400, 422)
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == response.status_code


async def test_same_idempotency_key_and_body_replays_the_first_response_without_a_second_user(
    client: httpx.AsyncClient, smtp: SMTPServer, app: FastAPI
) -> None:
    headers = {"Idempotency-Key": "signup-ada-1"}
    payload = {"email": "ada@example.com", "name": "Ada"}
    first = await client.post("/signups", json=payload, headers=headers)

    again = await client.post("/signups", json=payload, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count_users(app) == 1
    assert len(smtp.messages) == 1


async def test_same_idempotency_key_with_another_body_is_422(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    headers = {"Idempotency-Key": "signup-1"}
    await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"}, headers=headers)

    response = await client.post(
        "/signups", json={"email": "bob@example.com", "name": "Bob"}, headers=headers
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/idempotency-key-reused"
    assert await count_users(app) == 1


async def test_idempotency_key_is_scoped_to_the_normalised_request(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    headers = {"Idempotency-Key": "signup-2"}
    first = await client.post(
        "/signups", json={"email": "ada@example.com", "name": "Ada"}, headers=headers
    )

    again = await client.post(
        "/signups", json={"name": "Ada", "email": "ADA@example.com "}, headers=headers
    )

    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]


async def test_idempotency_key_expires_after_24_hours(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    headers = {"Idempotency-Key": "signup-3"}
    await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"}, headers=headers)
    async with app.state.database.request_sessions() as session, session.begin():
        created_at = await session.scalar(select(IdempotencyKey.created_at))
        assert created_at is not None
        stored_expiry = await session.scalar(select(IdempotencyKey.expires_at))
        assert stored_expiry == created_at + timedelta(hours=24)
        await session.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )

    response = await client.post(
        "/signups", json={"email": "bob@example.com", "name": "Bob"}, headers=headers
    )

    assert response.status_code == 201
    assert response.json()["email"] == "bob@example.com"
    assert await count_users(app) == 2


async def test_concurrent_requests_with_one_idempotency_key_create_one_user(
    client: httpx.AsyncClient, smtp: SMTPServer, app: FastAPI
) -> None:
    headers = {"Idempotency-Key": "signup-race"}
    payload = {"email": "ada@example.com", "name": "Ada"}

    responses = await asyncio.gather(
        *(client.post("/signups", json=payload, headers=headers) for _ in range(5))
    )

    assert [r.status_code for r in responses] == [201] * 5
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
    assert await count_users(app) == 1
    assert len(smtp.messages) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "ünicode"])
async def test_malformed_idempotency_key_is_422(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post(
        "/signups",
        json={"email": "ada@example.com", "name": "Ada"},
        headers={b"Idempotency-Key": key.encode()},
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_failed_signup_releases_its_idempotency_key(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})
    headers = {"Idempotency-Key": "retry-after-409"}

    conflict = await client.post(
        "/signups", json={"email": "ada@example.com", "name": "Ada"}, headers=headers
    )
    async with app.state.database.request_sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(IdempotencyKey))

    assert conflict.status_code == 409
    assert stored == 0


@pytest.mark.parametrize(
    "email",
    [
        "josé@example.com",  # needs SMTPUTF8, which the service does not send with
        "\uff41\uff44\uff41@example.com",  # a fullwidth look-alike
        "\u0430da@example.com",  # a Cyrillic a
        "a" * 65 + "@example.com",  # one past the 64 characters before the @
    ],
)
async def test_an_address_the_service_cannot_deliver_is_422_and_no_user_is_created(
    client: httpx.AsyncClient, app: FastAPI, smtp: SMTPServer, email: str
) -> None:
    response = await client.post("/signups", json={"email": email, "name": "Ada"})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["loc"] == ["body", "email"]
    assert await count_users(app) == 0
    assert smtp.data_commands == 0


async def test_a_look_alike_of_a_registered_address_is_no_second_account(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})

    fullwidth_local = await client.post(
        "/signups", json={"email": "\uff41\uff44\uff41@example.com", "name": "A"}
    )
    fullwidth_domain = await client.post(
        "/signups",
        json={"email": "ADA@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "name": "A"},
    )

    assert fullwidth_local.status_code == 422
    assert fullwidth_domain.status_code == 409
    assert await count_users(app) == 1


async def test_an_internationalised_domain_is_shown_in_unicode_and_mailed_in_ascii(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    response = await client.post("/signups", json={"email": "Zoe@Exämple.com", "name": "Zoë"})

    assert response.status_code == 201
    assert response.json()["email"] == "zoe@exämple.com"
    user = (await client.get(response.headers["location"])).json()
    assert (user["welcome_email"]["status"], user["welcome_email"]["attempts"]) == (
        "succeeded",
        1,
    )
    [received] = smtp.messages
    assert received.rcpt_tos == ["zoe@xn--exmple-cua.com"]
    assert received.message["To"] == "zoe@xn--exmple-cua.com"
