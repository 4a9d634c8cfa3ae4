"""Limits on abuse: per client address on signups, per key everywhere, per recipient on mail.

Each refusal is a 429 in problem details with Retry-After. The limits that
must hold across processes (Redis, the database) are also run against two
real servers in tests/e2e/test_security.py.
"""

import socket
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from app.models import AuditEntry, Notification, RecipientQuota, User
from app.models.base import utcnow
from app.services.api_keys import Scope
from tests.conftest import ClientWith
from tests.support.keys import api_client, issue_key
from tests.support.notify import sign_up
from tests.support.postgres import free_port
from tests.support.smtp import SMTPServer

PROBLEM = "application/problem+json"


def assert_rate_limited(response: httpx.Response, *, at_most: int) -> int:
    """A 429 in problem details; returns its Retry-After, checked to be 1..at_most seconds."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/rate-limited"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= at_most
    return retry_after


async def signup_from(app: FastAPI, address: str, n: int, **headers: str) -> httpx.Response:
    async with api_client(app, address=address) as http:
        return await http.post(
            "/signups", json={"email": f"user{n}@example.com", "name": "Ada"}, headers=headers
        )


async def count(app: FastAPI, model: Any) -> int:
    async with app.state.database.request_sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- per client address, on POST /signups ------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"signup_rate_limit": "3/minute"}])
async def test_a_signup_burst_from_one_address_gets_429_while_another_address_still_signs_up(
    app: FastAPI,
) -> None:
    burst = [await signup_from(app, "198.51.100.7", n) for n in range(5)]
    other = await signup_from(app, "198.51.100.8", 99)

    assert [r.status_code for r in burst[:3]] == [201, 201, 201]
    for refused in burst[3:]:
        assert_rate_limited(refused, at_most=60)
        assert "from this address" in refused.json()["detail"]
    assert other.status_code == 201
    assert await count(app, User) == 4  # a refused signup writes nothing


@pytest.mark.parametrize("settings_overrides", [{"signup_rate_limit": "2/minute"}])
async def test_a_forged_x_forwarded_for_from_an_untrusted_peer_changes_nothing(
    app: FastAPI,
) -> None:
    answers = [
        await signup_from(app, "203.0.113.9", n, **{"X-Forwarded-For": f"192.0.2.{n}"})
        for n in range(4)
    ]

    assert [r.status_code for r in answers] == [201, 201, 429, 429]
    async with app.state.database.request_sessions() as session:
        addresses = set(await session.scalars(select(AuditEntry.client_address)))
    assert addresses == {"203.0.113.9"}


@pytest.mark.parametrize(
    "settings_overrides", [{"signup_rate_limit": "2/minute", "trusted_proxies": "10.0.0.0/8"}]
)
async def test_a_trusted_proxy_s_x_forwarded_for_names_the_client_that_is_limited_and_audited(
    app: FastAPI,
) -> None:
    # The client wrote the first address itself; the proxy appended the one it saw.
    forged_then_real = {"X-Forwarded-For": "192.0.2.1, 198.51.100.1"}
    first = [await signup_from(app, "10.0.0.2", n, **forged_then_real) for n in range(3)]
    other = await signup_from(app, "10.0.0.2", 9, **{"X-Forwarded-For": "198.51.100.2"})

    assert [r.status_code for r in first] == [201, 201, 429]
    assert other.status_code == 201
    async with app.state.database.request_sessions() as session:
        addresses = set(await session.scalars(select(AuditEntry.client_address)))
    assert addresses == {"198.51.100.1", "198.51.100.2"}


@pytest.mark.parametrize("settings_overrides", [{"signup_rate_limit": "2/minute"}])
async def test_an_ipv6_client_is_limited_by_its_slash_64(app: FastAPI) -> None:
    same_block = [await signup_from(app, f"2001:db8::{n + 1}", n) for n in range(3)]
    next_block = await signup_from(app, "2001:db8:0:1::1", 9)

    assert [r.status_code for r in same_block] == [201, 201, 429]
    assert next_block.status_code == 201


@pytest.mark.parametrize("settings_overrides", [{"signup_rate_limit": "2/minute"}])
async def test_a_key_holder_signing_people_up_counts_against_its_key_not_its_address(
    client: httpx.AsyncClient,
) -> None:
    answers = [await sign_up(client, f"user{n}@example.com") for n in range(4)]

    assert len(answers) == 4


# --- per key, on every authenticated route --------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"api_key_rate_limit": "3/minute"}])
async def test_each_key_has_one_budget_across_every_route_and_others_keep_theirs(
    app: FastAPI, client_with: ClientWith
) -> None:
    busy = await client_with(Scope.ADMIN, Scope.METRICS, Scope.UPLOADS_READ)
    calm = await client_with(Scope.ADMIN)

    answers = [
        await busy.get("/admin/tasks"),
        await busy.get("/metrics"),
        await busy.get("/uploads"),
        await busy.get("/admin/tasks"),
    ]

    assert [r.status_code for r in answers[:3]] == [200, 200, 200]
    assert_rate_limited(answers[3], at_most=60)
    assert "with this key" in answers[3].json()["detail"]
    assert (await calm.get("/admin/tasks")).status_code == 200


@pytest.mark.parametrize(
    "settings_overrides", [{"api_key_rate_limit": "2/second;4/minute"}], ids=["two-rates"]
)
async def test_every_rate_of_a_setting_applies(app: FastAPI) -> None:
    key = await issue_key(app, "two-rates", [Scope.ADMIN])
    async with api_client(app, key) as http:
        burst = [(await http.get("/admin/tasks")).status_code for _ in range(3)]

    assert burst == [200, 200, 429]


@pytest.mark.parametrize(
    "settings_overrides",
    [{"signup_rate_limit": "0", "api_key_rate_limit": ""}],
    ids=["zero-and-empty"],
)
async def test_zero_or_empty_switches_a_limit_off(app: FastAPI, client_with: ClientWith) -> None:
    signups = [(await signup_from(app, "198.51.100.7", n)).status_code for n in range(12)]
    admin = await client_with(Scope.ADMIN)
    reads = [(await admin.get("/admin/tasks")).status_code for _ in range(12)]

    assert set(signups) == {201}
    assert set(reads) == {200}


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a Redis that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port: int = listener.getsockname()[1]
        yield port


# The storage is under test, not the database: SQLite only.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("storage", ["refused", "hanging"])
async def test_an_unreachable_rate_limit_storage_lets_requests_through_and_says_so(
    database_url: str,
    smtp: SMTPServer,
    tmp_path: Any,
    silent_port: int,
    storage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from app.main import create_app  # noqa: PLC0415
    from tests.conftest import make_settings  # noqa: PLC0415

    port = free_port() if storage == "refused" else silent_port
    settings = make_settings(
        database_url,
        smtp,
        tmp_path / "data",
        signup_rate_limit="1/minute",
        rate_limit_storage_uri=f"redis://127.0.0.1:{port}",
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        first = await signup_from(application, "198.51.100.7", 0)
        started = time.monotonic()
        after = [await signup_from(application, "198.51.100.7", n) for n in range(1, 4)]
        took = time.monotonic() - started

    assert [r.status_code for r in [first, *after]] == [201] * 4
    assert took < 1  # the requests after the failure do not wait for the storage again
    assert caplog.text.count("rate limit storage unreachable") == 1


# --- per recipient, in the database -----------------------------------------------


async def welcome_generation(app: FastAPI, user_id: str) -> int:
    async with app.state.database.request_sessions() as session:
        user: User | None = await session.get(User, uuid.UUID(user_id))
    assert user is not None
    return user.welcome_generation


@pytest.mark.parametrize("settings_overrides", [{"welcome_resends_per_day": 2}])
async def test_welcome_resends_beyond_the_daily_limit_get_429_and_send_nothing(
    app: FastAPI, client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    user_id = (await sign_up(client))["id"]
    other_id = (await sign_up(client, "bob@example.com"))["id"]

    resends = [await client.post(f"/users/{user_id}/welcome-email/resend") for _ in range(3)]
    other = await client.post(f"/users/{other_id}/welcome-email/resend")

    assert [r.status_code for r in resends[:2]] == [202, 202]
    retry_after = assert_rate_limited(resends[2], at_most=86400)
    assert retry_after > 86400 - 60
    assert "welcome resends to a user a day" in resends[2].json()["detail"]
    assert other.status_code == 202
    assert await welcome_generation(app, user_id) == 3  # the refused one re-armed nothing
    assert len(smtp.messages) == 5  # two welcome emails, three resends


@pytest.mark.parametrize("settings_overrides", [{"notifications_per_user_per_hour": 2}])
async def test_notifications_beyond_the_hourly_limit_get_429_and_store_nothing(
    app: FastAPI, client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    user_id = (await sign_up(client))["id"]
    other_id = (await sign_up(client, "bob@example.com"))["id"]
    note = {"channel": "email", "subject": "Hi", "body": "There"}

    sent = [await client.post(f"/users/{user_id}/notifications", json=note) for _ in range(3)]
    other = await client.post(f"/users/{other_id}/notifications", json=note)

    assert [r.status_code for r in sent[:2]] == [202, 202]
    retry_after = assert_rate_limited(sent[2], at_most=3600)
    assert retry_after > 3600 - 60
    assert other.status_code == 202
    assert await count(app, Notification) == 3


@pytest.mark.parametrize("settings_overrides", [{"notifications_per_user_per_hour": 1}])
async def test_a_replayed_or_refused_notification_uses_up_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user_id = (await sign_up(client))["id"]
    note = {"channel": "email", "subject": "Hi", "body": "There"}
    first = {"Idempotency-Key": "first"}
    refused_key = {"Idempotency-Key": "second"}

    accepted = await client.post(f"/users/{user_id}/notifications", json=note, headers=first)
    replayed = await client.post(f"/users/{user_id}/notifications", json=note, headers=first)
    refused = await client.post(f"/users/{user_id}/notifications", json=note, headers=refused_key)
    # The refusal released its Idempotency-Key: once the window has passed, it works.
    async with app.state.database.request_sessions() as session, session.begin():
        await session.execute(
            update(RecipientQuota).values(window_started_at=utcnow() - timedelta(hours=1))
        )
    retried = await client.post(f"/users/{user_id}/notifications", json=note, headers=refused_key)

    assert accepted.status_code == 202
    assert (replayed.status_code, replayed.headers["idempotent-replayed"]) == (202, "true")
    assert refused.status_code == 429
    assert retried.status_code == 202
    assert await count(app, Notification) == 2


@pytest.mark.parametrize(
    "settings_overrides", [{"notifications_per_user_per_hour": 0, "welcome_resends_per_day": 0}]
)
async def test_zero_switches_the_recipient_limits_off(client: httpx.AsyncClient) -> None:
    user_id = (await sign_up(client))["id"]
    note = {"channel": "email", "subject": "Hi", "body": "There"}

    notes = [await client.post(f"/users/{user_id}/notifications", json=note) for _ in range(25)]
    resends = [await client.post(f"/users/{user_id}/welcome-email/resend") for _ in range(5)]

    assert {r.status_code for r in notes} == {202}
    assert {r.status_code for r in resends} == {202}


@pytest.mark.parametrize("settings_overrides", [{"welcome_resends_per_day": 1}])
async def test_recipient_quotas_go_with_their_user(app: FastAPI, client: httpx.AsyncClient) -> None:
    user_id = (await sign_up(client))["id"]
    await client.post(f"/users/{user_id}/welcome-email/resend")

    await client.delete(f"/users/{user_id}")

    assert await count(app, RecipientQuota) == 0
