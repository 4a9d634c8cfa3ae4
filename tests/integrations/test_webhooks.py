"""Webhook signing and the outcome of a delivery, against a real receiver on loopback."""

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate

import pytest
from standardwebhooks.webhooks import Webhook

from app.core.config import Settings
from app.integrations import webhooks
from app.integrations.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from tests.support.postgres import free_port
from tests.support.webhooks import Reply, WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        server.secret = webhooks.new_secret()
        yield server


@pytest.fixture
async def client() -> AsyncIterator[webhooks.WebhookClient]:
    settings = Settings(_env_file=None, webhook_allow_private_targets=True)
    async with webhooks.open_client(settings) as http:
        yield http


async def deliver(
    client: webhooks.WebhookClient, receiver: WebhookReceiver, url: str | None = None
) -> None:
    assert receiver.secret is not None
    await webhooks.send(
        client,
        url=url or receiver.url,
        signing_secrets=[receiver.secret],
        message_id="msg_1",
        payload={"type": "test", "data": {"text": "héllo"}},
        timeout_seconds=1.0,
    )


async def failure(client: webhooks.WebhookClient, receiver: WebhookReceiver) -> DeliveryError:
    with pytest.raises(DeliveryError) as raised:
        await deliver(client, receiver)
    return raised.value


def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    secret = webhooks.new_secret()

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert webhooks.new_secret() != secret


def test_signed_headers_verify_with_the_reference_library() -> None:
    secret = webhooks.new_secret()
    body = '{"a":1}'

    headers = webhooks.signed_headers(signing_secrets=[secret], message_id="msg_1", body=body)

    assert Webhook(secret).verify(body, headers) == {"a": 1}
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(webhooks.new_secret()).verify(body, headers)


def test_two_secrets_give_two_signatures_each_verifying_alone() -> None:
    new, previous = webhooks.new_secret(), webhooks.new_secret()
    body = '{"a":1}'

    headers = webhooks.signed_headers(signing_secrets=[new, previous], message_id="m", body=body)

    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(body, headers) == Webhook(previous).verify(body, headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(webhooks.new_secret()).verify(body, headers)


async def test_a_2xx_delivers_a_signed_json_body(
    client: webhooks.WebhookClient, receiver: WebhookReceiver
) -> None:
    await deliver(client, receiver)

    [request] = receiver.requests
    assert request.verified
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == "msg_1"
    assert request.payload == {"type": "test", "data": {"text": "héllo"}}


async def test_a_cookie_a_receiver_sets_is_never_sent_back(
    client: webhooks.WebhookClient, receiver: WebhookReceiver
) -> None:
    receiver.reply_with(Reply(200, headers={"Set-Cookie": "session=abc; Path=/"}), 200)

    await deliver(client, receiver)
    await deliver(client, receiver)

    assert [request.headers.get("cookie") for request in receiver.requests] == [None, None]
    assert receiver.requests[1].headers["user-agent"] == webhooks.USER_AGENT


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_408_429_and_5xx_are_transient(
    client: webhooks.WebhookClient, receiver: WebhookReceiver, status: int
) -> None:
    receiver.reply_with(Reply(status, body=b"try later"))

    error = await failure(client, receiver)

    assert isinstance(error, TransientDeliveryError)
    assert str(error) == f"HTTP {status}: try later"


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_other_4xx_are_permanent(
    client: webhooks.WebhookClient, receiver: WebhookReceiver, status: int
) -> None:
    receiver.reply_with(status)

    assert isinstance(await failure(client, receiver), PermanentDeliveryError)


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0", 0.0), ("date+60", 60.0)])
async def test_retry_after_is_read_as_seconds_or_an_http_date(
    client: webhooks.WebhookClient, receiver: WebhookReceiver, header: str, seconds: float
) -> None:
    if header == "date+60":
        header = formatdate(time.time() + 60, usegmt=True)
    receiver.reply_with(Reply(429, headers={"Retry-After": header}))

    error = await failure(client, receiver)

    assert error.retry_after is not None
    assert error.retry_after == pytest.approx(seconds, abs=2)


@pytest.mark.parametrize("header", ["soon", "-5", "1.5", ""])
def test_an_unusable_retry_after_is_ignored(header: str) -> None:
    assert webhooks.parse_retry_after(header) is None


async def test_a_huge_response_body_is_read_only_up_to_the_cap(
    client: webhooks.WebhookClient, receiver: WebhookReceiver
) -> None:
    receiver.reply_with(Reply(500, body=b"x" * 5_000_000))

    error = await failure(client, receiver)

    assert len(str(error)) < 400
    assert str(error).startswith("HTTP 500: xxx")


async def test_a_slow_receiver_times_out_as_a_transient_error(
    client: webhooks.WebhookClient, receiver: WebhookReceiver
) -> None:
    receiver.reply_with(Reply(200, delay=3))

    error = await failure(client, receiver)

    assert isinstance(error, TransientDeliveryError)
    assert "timed out after 1s" in str(error)


async def test_a_refused_connection_is_transient(
    client: webhooks.WebhookClient, receiver: WebhookReceiver
) -> None:
    with pytest.raises(TransientDeliveryError, match="connection failed"):
        await deliver(client, receiver, url=f"http://127.0.0.1:{free_port()}/hook")


async def test_a_url_of_the_wrong_shape_is_refused_without_a_request(
    client: webhooks.WebhookClient, receiver: WebhookReceiver
) -> None:
    with pytest.raises(PermanentDeliveryError, match="scheme"):
        await deliver(client, receiver, url="file:///etc/passwd")


async def test_a_kept_alive_connection_the_receiver_closed_while_idle_is_not_reused(
    client: webhooks.WebhookClient,
) -> None:
    """The receiver answers each connection once, keep-alive, then closes it: the pool must
    see the idle connection was closed and open a new one, not send into a dead socket."""
    connections = 0
    closed = asyncio.Queue[None]()

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.put_nowait(None)

    server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    secret = webhooks.new_secret()
    try:
        for n in range(3):
            await webhooks.send(
                client,
                url=url,
                signing_secrets=[secret],
                message_id=f"msg_{n}",
                payload={"n": n},
                timeout_seconds=1.0,
            )
            await asyncio.wait_for(closed.get(), 5)  # closed while the pool holds it idle
    finally:
        server.close()
        await server.wait_closed()

    assert connections == 3
