"""Webhook delivery: a JSON POST signed per Standard Webhooks, its outcome classified.

The signature is made by the `standardwebhooks` library, the specification's
own reference implementation, so receivers can verify with any of its SDKs:
HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the
base64 secret after `whsec_`. `webhook-id` is the notification's id and stays
the same on every retry: it is the receiver's key for dropping duplicates.
"""

import asyncio
import base64
import json
import math
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from app.core.config import Settings
from app.integrations.errors import PermanentDeliveryError, TransientDeliveryError
from app.integrations.ssrf import GuardedTransport, UnsafeWebhookUrl, check_shape
from app.models.base import utcnow

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
# The specification asks for 24 to 64 bytes of key.
_SECRET_BYTES = 32
# How much of a response body is read at most: enough to show why a receiver
# refused, never enough for a hostile receiver to fill our memory.
RESPONSE_LIMIT_BYTES = 4096
# How much of that body goes into the recorded error.
_ERROR_BODY_CHARS = 300
USER_AGENT = "signup-service-webhooks"


def new_secret() -> str:
    """A fresh signing secret in the specification's format: `whsec_` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


class WebhookClient:
    """The process's one webhook sender: httpx's connection pool behind the SSRF guard,
    with requests handed to it directly.

    An httpx.AsyncClient in front of the pool would add what a webhook sender
    must not use (redirects, cookies kept from one receiver's reply, proxies
    from the environment, which would connect past the guard) and costs a
    quarter of a delivery's CPU for it. Without it, no redirect is followed,
    no cookie is kept and no proxy is asked, by construction.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport, *, timeout_seconds: float) -> None:
        self._transport = transport
        # httpx's per-phase timeouts (connect, each read, each write, a pool slot).
        self._timeouts = httpx.Timeout(timeout_seconds).as_dict()

    @asynccontextmanager
    async def stream(
        self, url: httpx.URL | str, *, content: bytes, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """POST `content` to `url`; the response with its body unread, closed afterwards."""
        request = httpx.Request(
            "POST",
            url,
            content=content,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            extensions={"timeout": self._timeouts},
        )
        response = await self._transport.handle_async_request(request)
        try:
            yield response
        finally:
            await response.aclose()

    async def post(
        self, url: httpx.URL | str, *, content: bytes, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST and read the whole response (for callers that want its body)."""
        async with self.stream(url, content=content, headers=headers) as response:
            await response.aread()
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> "WebhookClient":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


def open_client(settings: Settings) -> WebhookClient:
    """The process's webhook client: pooled connections (one per concurrent delivery, kept
    alive 30 s), timeouts, and the SSRF guard on every connection it opens."""
    concurrency = settings.notification_webhook_concurrency
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=30
    )
    return WebhookClient(
        GuardedTransport(limits=limits, allow_private=settings.webhook_allow_private_targets),
        timeout_seconds=settings.webhook_timeout_seconds,
    )


def signed_headers(*, signing_secrets: Sequence[str], message_id: str, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for this body, signed now with each secret.

    Several signatures go in one header, space-separated, as the specification
    allows for key rotation: a receiver accepts the message if any one verifies.
    """
    now = utcnow()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(math.floor(now.timestamp())),
        "webhook-signature": " ".join(
            Webhook(secret).sign(message_id, now, body) for secret in signing_secrets
        ),
    }


async def send(
    client: WebhookClient,
    *,
    url: str,
    signing_secrets: Sequence[str],
    message_id: str,
    payload: dict[str, Any],
    timeout_seconds: float,
) -> None:
    """POST the payload, signed with each of `signing_secrets`: returns on 2xx, raises a
    DeliveryError the runner classifies otherwise."""
    try:
        parsed = check_shape(url)
    except UnsafeWebhookUrl as exc:
        raise PermanentDeliveryError(f"webhook URL refused: {exc}") from None
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    headers = {
        **signed_headers(signing_secrets=signing_secrets, message_id=message_id, body=body),
        "Content-Type": "application/json",
        # Compressed bodies would be inflated before the size cap could apply.
        "Accept-Encoding": "identity",
    }
    try:
        # One deadline for the whole exchange: httpx's timeouts apply per read,
        # and a receiver dripping a byte at a time would never trip them.
        async with (
            asyncio.timeout(timeout_seconds),
            client.stream(parsed, content=body.encode(), headers=headers) as response,
        ):
            reply = await _read_capped(response)
    except UnsafeWebhookUrl as exc:
        raise PermanentDeliveryError(f"webhook URL refused at delivery: {exc}") from None
    except (TimeoutError, httpx.TimeoutException):
        raise TransientDeliveryError(f"webhook timed out after {timeout_seconds:g}s") from None
    except httpx.UnsupportedProtocol as exc:
        raise PermanentDeliveryError(f"webhook URL refused: {exc}") from None
    except httpx.TransportError as exc:
        raise TransientDeliveryError(
            f"webhook connection failed: {type(exc).__name__}: {exc}"
        ) from None
    _classify(response, reply)


async def _read_capped(response: httpx.Response) -> bytes:
    """At most RESPONSE_LIMIT_BYTES of the body; the rest is never read (the connection closes)."""
    received = bytearray()
    async for chunk in response.aiter_raw():
        received += chunk
        if len(received) >= RESPONSE_LIMIT_BYTES:
            break
    return bytes(received[:RESPONSE_LIMIT_BYTES])


def _classify(response: httpx.Response, reply: bytes) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        # Following a redirect would send the signed payload somewhere nobody vetted.
        location = response.headers.get("location", "")
        raise PermanentDeliveryError(f"HTTP {status}: redirect to {location!r} not followed")
    text = reply.decode("utf-8", errors="replace").strip()[:_ERROR_BODY_CHARS]
    message = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise TransientDeliveryError(message, retry_after=retry_after)
    raise PermanentDeliveryError(message)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from Retry-After (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - utcnow()).total_seconds())
