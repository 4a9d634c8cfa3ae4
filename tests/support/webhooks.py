"""A real HTTP webhook receiver on loopback: records requests, verifies signatures, plays a script.

uvicorn serves a small ASGI app in its own thread and event loop, so the
receiver keeps answering (or keeps a reply waiting) whatever the test's own
loop is doing. Each request is checked against the Standard Webhooks
signature with `secret`, the secret the API returned, as a real receiver would.
"""

import asyncio
import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.types import Receive, Scope, Send

from tests.support.postgres import free_port


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, headers, a body, and how long to wait before sending it."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


@dataclass(frozen=True)
class ReceivedWebhook:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    received_at: float  # time.monotonic()
    verified: bool  # the signature matched `secret` (False without one)

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


class WebhookReceiver:
    """Start, script replies, inspect what arrived, stop. Unscripted requests get 200, or,
    with `reject_unverified`, 401 when the signature does not verify with `secret`, as a
    real receiver answers."""

    def __init__(
        self,
        port: int | None = None,
        *,
        keep_bodies: bool = True,
        tls: tuple[Path, Path] | None = None,
        reject_unverified: bool = False,
    ) -> None:
        """`tls`: (certificate, key) files to serve HTTPS with."""
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._tls = tls
        self.secret: str | None = None
        self.reject_unverified = reject_unverified
        self._keep_bodies = keep_bodies
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self._received: list[ReceivedWebhook] = []
        self._in_flight = 0
        self.max_in_flight = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.url_for("/hook")

    def url_for(self, path: str, host: str | None = None) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    # Lifecycle
    def start(self, timeout: float = 10.0) -> "WebhookReceiver":
        config = uvicorn.Config(
            self._app,
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            interface="asgi3",
            timeout_graceful_shutdown=1,
            ssl_certfile=self._tls[0] if self._tls else None,
            ssl_keyfile=self._tls[1] if self._tls else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("webhook receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Script
    def reply_with(self, *replies: Reply | int) -> None:
        """Answer the next requests with these, in order (an int is a bare status)."""
        with self._lock:
            self._replies.extend(r if isinstance(r, Reply) else Reply(status=r) for r in replies)

    # Inspection
    @property
    def requests(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self._received)

    def count(self) -> int:
        with self._lock:
            return len(self._received)

    def webhook_id_counts(self) -> Counter[str]:
        return Counter(request.webhook_id for request in self.requests)

    def _verify(self, body: bytes, headers: dict[str, str]) -> bool:
        if self.secret is None:
            return False
        try:
            Webhook(self.secret).verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError):
            return False
        return True

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        received = ReceivedWebhook(
            method=scope["method"],
            path=scope["path"],
            headers=headers,
            body=body if self._keep_bodies else b"",
            received_at=time.monotonic(),
            verified=self._verify(body, headers),
        )
        with self._lock:
            self._received.append(received)
            if self._replies:
                reply = self._replies.popleft()
            elif self.reject_unverified and not received.verified:
                reply = Reply(status=401, body=b"signature does not verify")
            else:
                reply = Reply()
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if reply.delay:
                await asyncio.sleep(reply.delay)
            await send(
                {
                    "type": "http.response.start",
                    "status": reply.status,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()],
                }
            )
            await send({"type": "http.response.body", "body": reply.body})
        finally:
            with self._lock:
                self._in_flight -= 1
