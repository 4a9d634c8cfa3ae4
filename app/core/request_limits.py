"""Limits on a request's body: how large it may be, and how slowly it may arrive.

Without them one client can make the service parse a 10 MiB JSON body, or hold
a request open for ever by sending a byte now and then. Every body is counted
as it is read (a declared Content-Length over the limit is refused before a
byte is read: 413) and timed (408):

- no byte for HTTP_BODY_IDLE_TIMEOUT_SECONDS: the client went quiet;
- after that long, fewer than HTTP_BODY_MIN_BYTES_PER_SECOND on average since
  the body began: the client is trickling (Apache's mod_reqtimeout MinRate).

A large upload at any ordinary speed stays far inside both. Bodies are JSON
and capped at HTTP_JSON_BODY_MAX_BYTES, except where a route streams an
upload and raises its own limit (`allow_body`). Limits on the request line
and headers, which arrive before any application code runs, are the HTTP
server's (`app.core.connection_limits`).

The errors are HTTPExceptions, so they pass through FastAPI's body parsing
unchanged, and leave as problem details with `Connection: close` (the rest of
the body is not read).
"""

import asyncio
import time
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BODY_LIMIT = "signup_service.body_limit"
_CLOSE = {"Connection": "close"}


class RequestBodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes", headers=_CLOSE)


class RequestBodyTimeout(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(408, detail, headers=_CLOSE)


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int
    idle_timeout: float
    min_bytes_per_second: int


def allow_body(scope: Scope, max_bytes: int) -> None:
    """Let this request's body be up to `max_bytes` (a route that streams an upload)."""
    scope[_BODY_LIMIT] = max_bytes


class RequestLimitsMiddleware:
    """Counts and times every request body as the application reads it. Plain ASGI:
    nothing is buffered, and a request that sends no body costs one comparison."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, _GuardedBody(scope, receive, self.limits), send)


class _GuardedBody:
    """A `receive` that refuses a body over its limit or arriving too slowly."""

    def __init__(self, scope: Scope, receive: Receive, limits: BodyLimits) -> None:
        self._scope = scope
        self._receive = receive
        self._limits = limits
        self._received = 0
        self._started: float | None = None
        self._complete = False
        declared = Headers(scope=scope).get("content-length", "")
        self._declared = int(declared) if declared.isdigit() else None

    async def __call__(self) -> Message:
        if self._complete:
            # The body is in; what is left is waiting for a disconnect, for as long
            # as the response takes.
            return await self._receive()
        limit = self._scope.get(_BODY_LIMIT, self._limits.max_bytes)
        if self._declared is not None and self._declared > limit:
            raise RequestBodyTooLarge(limit)
        now = time.monotonic()
        if self._started is None:
            self._started = now
        wait = self._wait_limit(now)
        try:
            async with asyncio.timeout(wait):
                message = await self._receive()
        except TimeoutError:
            raise RequestBodyTimeout(self._why(wait, time.monotonic())) from None
        if message["type"] != "http.request":
            return message
        self._received += len(message.get("body", b""))
        if self._received > limit:
            raise RequestBodyTooLarge(limit)
        self._complete = not message.get("more_body", False)
        return message

    def _wait_limit(self, now: float) -> float:
        """Seconds the next chunk may take: the idle timeout, or less if the body is
        behind the minimum rate (which applies once the idle timeout has passed)."""
        assert self._started is not None  # noqa: S101 - set before the first wait
        limits = self._limits
        if limits.min_bytes_per_second <= 0:
            return limits.idle_timeout
        due = self._started + limits.idle_timeout + self._received / limits.min_bytes_per_second
        return max(0.0, min(limits.idle_timeout, due - now))

    def _why(self, waited: float, now: float) -> str:
        limits = self._limits
        if waited >= limits.idle_timeout:
            return f"no request body arrived for {limits.idle_timeout:g} seconds"
        elapsed = now - (self._started or now)
        return (
            f"the request body arrived slower than {limits.min_bytes_per_second} bytes "
            f"a second ({self._received} bytes in {elapsed:.0f} seconds)"
        )
