"""A user's webhook endpoint: set at signup or by PATCH, its secret shown once, rotated, guarded."""

import base64
import ipaddress
import logging
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.logging import quiet_chatty_loggers
from app.integrations import ssrf
from app.models import User
from tests.support.notify import LOOPBACK_WEBHOOKS, notify, sign_up, sign_up_with_webhook
from tests.support.webhooks import WebhookReceiver

PROBLEM = "application/problem+json"
HOOK = "https://hooks.example.test/signup-service"
PUBLIC = "93.184.215.14"  # what HOOK resolves to here; never connected to


@pytest.fixture(autouse=True)
def public_hook_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """HOOK's host resolves to a public address, without asking any DNS server."""
    real = ssrf.resolve

    async def resolve(host: str, port: int) -> list[ssrf.IPAddress]:
        if host == "hooks.example.test":
            return [ipaddress.ip_address(PUBLIC)]
        return await real(host, port)

    monkeypatch.setattr(ssrf, "resolve", resolve)


async def stored_webhook(app: FastAPI, user_id: str) -> tuple[str | None, str | None]:
    async with app.state.database.request_sessions() as session:
        row = (
            await session.execute(
                select(User.webhook_url, User.webhook_secret).where(User.id == uuid.UUID(user_id))
            )
        ).one()
    return row.webhook_url, row.webhook_secret


async def patch(client: httpx.AsyncClient, user_id: str, body: dict[str, Any]) -> httpx.Response:
    return await client.patch(f"/users/{user_id}", json=body)


def assert_secret(value: Any) -> str:
    assert isinstance(value, str)
    assert value.startswith("whsec_")
    assert len(base64.b64decode(value.removeprefix("whsec_"))) == 32
    return value


async def test_signup_with_a_webhook_url_returns_the_signing_secret_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_up(client, webhook_url=HOOK)

    secret = assert_secret(user["webhook_secret"])
    assert user["webhook_url"] == HOOK
    assert await stored_webhook(app, user["id"]) == (HOOK, secret)
    again = (await client.get(f"/users/{user['id']}")).json()
    assert again["webhook_url"] == HOOK
    assert "webhook_secret" not in again
    assert secret not in (await client.get(f"/users/{user['id']}")).text


async def test_signup_without_a_webhook_url_issues_no_secret(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)

    assert user["webhook_url"] is None
    assert user["webhook_secret"] is None


async def test_a_replayed_signup_does_not_repeat_the_secret(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    headers = {"Idempotency-Key": "signup-with-hook"}
    payload = {"email": "ada@example.com", "name": "Ada", "webhook_url": HOOK}
    first = await client.post("/signups", json=payload, headers=headers)

    again = await client.post("/signups", json=payload, headers=headers)

    secret = assert_secret(first.json()["webhook_secret"])
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["webhook_secret"] is None
    assert secret not in again.text
    async with app.state.database.request_sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(User))
    assert stored == 1


async def test_patch_sets_the_url_and_returns_a_new_secret(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_up(client)

    response = await patch(client, user["id"], {"webhook_url": HOOK})

    assert response.status_code == 200
    secret = assert_secret(response.json()["webhook_secret"])
    assert response.json()["webhook_url"] == HOOK
    assert await stored_webhook(app, user["id"]) == (HOOK, secret)


async def test_patch_to_another_url_issues_another_secret(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_up(client, webhook_url=HOOK)

    response = await patch(client, user["id"], {"webhook_url": HOOK + "/v2"})

    secret = assert_secret(response.json()["webhook_secret"])
    assert secret != user["webhook_secret"]
    assert await stored_webhook(app, user["id"]) == (HOOK + "/v2", secret)


async def test_patch_with_the_same_url_changes_nothing_and_shows_no_secret(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_up(client, webhook_url=HOOK)

    response = await patch(client, user["id"], {"webhook_url": HOOK})

    assert response.status_code == 200
    assert response.json()["webhook_secret"] is None
    assert await stored_webhook(app, user["id"]) == (HOOK, user["webhook_secret"])


async def test_patch_with_null_removes_the_endpoint_and_its_secret(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_up(client, webhook_url=HOOK)

    response = await patch(client, user["id"], {"webhook_url": None})

    assert response.status_code == 200
    assert response.json()["webhook_url"] is None
    assert await stored_webhook(app, user["id"]) == (None, None)


async def test_patch_without_fields_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_up(client, webhook_url=HOOK)

    response = await patch(client, user["id"], {})

    assert response.status_code == 200
    assert response.json()["webhook_url"] == HOOK
    assert response.json()["webhook_secret"] is None


@pytest.mark.parametrize(
    "body", [{"email": "eve@example.com"}, {"webhook_url": 42}, {"webhook_url": "https://a b/"}]
)
async def test_patch_with_other_fields_or_bad_types_is_422(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    user = await sign_up(client)

    response = await patch(client, user["id"], body)

    assert response.status_code == 422
    assert response.json()["type"] == "/problems/validation-error"


async def test_patch_for_an_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    response = await patch(client, str(uuid.uuid4()), {"webhook_url": HOOK})

    assert response.status_code == 404
    assert response.json()["type"] == "/problems/user-not-found"


async def test_rotate_issues_a_new_secret_and_keeps_the_url(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_up(client, webhook_url=HOOK)

    response = await client.post(f"/users/{user['id']}/webhook-secret/rotate")

    assert response.status_code == 200
    secret = assert_secret(response.json()["webhook_secret"])
    assert secret != user["webhook_secret"]
    assert await stored_webhook(app, user["id"]) == (HOOK, secret)


async def test_rotate_without_a_webhook_url_is_409(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)

    response = await client.post(f"/users/{user['id']}/webhook-secret/rotate")

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/webhook-not-configured"


async def test_rotate_for_an_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(f"/users/{uuid.uuid4()}/webhook-secret/rotate")

    assert response.status_code == 404


# Every vector the issue names, and a few more ways of spelling loopback.
SSRF_VECTORS = [
    "http://127.0.0.1/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://localhost:8000/hook",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "https://user:secret@hooks.example.test/hook",
    "http://2130706433/hook",
    "http://127.1/hook",
    "http://0x7f.0.0.1/hook",
    "http://[::]/hook",
    "http://192.168.0.1/hook",
    "http://172.16.0.1/hook",
    "http://224.0.0.1/hook",
    "http://[fe80::1]/hook",
    "http://[2002:7f00:1::]/hook",
]


@pytest.mark.parametrize("url", SSRF_VECTORS)
async def test_patch_refuses_each_ssrf_vector_and_keeps_the_old_endpoint(
    client: httpx.AsyncClient, app: FastAPI, url: str
) -> None:
    user = await sign_up(client, webhook_url=HOOK)

    response = await patch(client, user["id"], {"webhook_url": url})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/webhook-url-refused"
    assert await stored_webhook(app, user["id"]) == (HOOK, user["webhook_secret"])


# Hosts that are no valid IDNA name, and port 0: answered 422 like any refused URL, not 500.
MALFORMED_URLS = [
    "http://xn--localhost-/",
    "http://xn--/hook",
    "https://xn--zz.example.test/hook",
    "http://hooks.example.test:0/hook",
    "https://hooks.example.test:0",
]


@pytest.mark.parametrize("url", MALFORMED_URLS)
async def test_a_webhook_url_with_an_invalid_idna_host_or_port_0_is_422_on_signup_and_patch(
    client: httpx.AsyncClient, app: FastAPI, url: str
) -> None:
    user = await sign_up(client, webhook_url=HOOK)

    patched = await patch(client, user["id"], {"webhook_url": url})
    signup = await client.post(
        "/signups", json={"email": "bob@example.com", "name": "Bob", "webhook_url": url}
    )

    for response in (patched, signup):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "/problems/webhook-url-refused"
    assert await stored_webhook(app, user["id"]) == (HOOK, user["webhook_secret"])


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://localhost/", "gopher://x/"]
)
async def test_signup_refuses_an_ssrf_vector_and_creates_no_user(
    client: httpx.AsyncClient, app: FastAPI, url: str
) -> None:
    response = await client.post(
        "/signups", json={"email": "ada@example.com", "name": "Ada", "webhook_url": url}
    )

    assert response.status_code == 422
    assert response.json()["type"] == "/problems/webhook-url-refused"
    async with app.state.database.request_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize("settings_overrides", [LOOPBACK_WEBHOOKS])
async def test_the_switch_lets_a_loopback_url_be_set(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    user = await sign_up(client, webhook_url=receiver.url)

    assert user["webhook_url"] == receiver.url
    assert_secret(user["webhook_secret"])


@pytest.mark.parametrize("settings_overrides", [LOOPBACK_WEBHOOKS])
async def test_the_switch_still_refuses_other_schemes_and_credentials(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)

    for url in ("file:///etc/passwd", "http://user:pw@127.0.0.1/"):
        response = await patch(client, user["id"], {"webhook_url": url})
        assert response.status_code == 422


@pytest.mark.parametrize("settings_overrides", [LOOPBACK_WEBHOOKS])
async def test_the_signing_secret_never_reaches_the_logs(
    client: httpx.AsyncClient, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    quiet_chatty_loggers()  # as the service's logging setup does
    user = await sign_up_with_webhook(client, receiver)
    rotated = (await client.post(f"/users/{user['id']}/webhook-secret/rotate")).json()
    receiver.secret = rotated["webhook_secret"]
    receiver.reply_with(500)
    await notify(client, user["id"])

    assert receiver.requests[-1].verified
    for secret in (user["webhook_secret"], rotated["webhook_secret"]):
        assert secret.removeprefix("whsec_") not in caplog.text


@pytest.mark.parametrize("settings_overrides", [LOOPBACK_WEBHOOKS])
async def test_a_token_in_the_webhook_url_is_not_logged_at_info(
    client: httpx.AsyncClient, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    quiet_chatty_loggers()  # as the service's logging setup does
    user = await sign_up(client)
    await patch(client, user["id"], {"webhook_url": receiver.url + "?token=s3cr3t-t0ken"})

    await notify(client, user["id"])

    assert len(receiver.requests) == 1
    assert "s3cr3t-t0ken" not in caplog.text
