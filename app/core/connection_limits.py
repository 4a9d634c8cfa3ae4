"""Limits on a request's head (request line and headers), enforced by the HTTP server itself.

uvicorn's httptools protocol accepts a head of any size and any number of
headers, and waits for it for ever: a client can make the server buffer a
1 MB header, or hold a connection by sending nothing, or a byte now and then
(slowloris). The head arrives before any application code runs, so this is
the one place to refuse it. `python -m app serve` runs uvicorn with this
protocol: uvicorn's own, plus

- 431 once the head passes HTTP_HEADER_MAX_BYTES or HTTP_HEADER_MAX_COUNT
  headers, counted as the bytes arrive, so a huge header is refused before
  it is buffered whole;
- a deadline of HTTP_HEADER_TIMEOUT_SECONDS for the whole head, from the
  connection's start or the request's first byte: 408, then the connection
  is closed. (Between requests, uvicorn's keep-alive timeout applies.)

The hooks are the parser callbacks uvicorn's protocol is made of; a test
drives each limit through a real server, so an uvicorn change that bypassed
one would fail the suite.
"""

import asyncio
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

# How long a refused connection is still read from (and what arrives dropped).
_LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class HeadLimits:
    max_bytes: int
    max_count: int
    timeout: float


class _HeadRefused(Exception):
    """Raised in a parser callback to stop parsing; the refusal is sent by the protocol."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on the request head."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HeadLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        self._in_head = True  # until the head of the request now being read is complete
        self._head_bytes = 0  # bytes of the head seen so far (and a little more, see below)
        self._head_count = 0
        self._heads_completed = 0  # on this connection
        self._head_deadline: asyncio.TimerHandle | None = None
        self._refusal: tuple[HTTPStatus, str] | None = None

    # The connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # lingering after a refusal: read and drop what is still on its way
        head_in_progress, heads_before = self._in_head, self._heads_completed
        super().data_received(data)
        if self._refusal is not None or self.transport.is_closing():
            return
        # A chunk that began and ended inside one and the same head is all head. This
        # bounds what the parser buffers for a header that never ends, before it calls
        # back. (A chunk that also held a head's end, a body, and the next request's
        # start is not: the callbacks have counted that head's parts.)
        if head_in_progress and self._in_head and self._heads_completed == heads_before:
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_bytes:
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, self._too_large())

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any parser error 400, including the one our callbacks raise.
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._send_refusal()

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_deadline is None:  # the next request on a kept-alive connection
            self._start_head()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), headers=0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4, headers=1)  # "name: value\r\n"
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads_completed += 1
        self._stop_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = self._head_count = 0

    # The limits
    def _start_head(self) -> None:
        self._in_head = True
        self._head_bytes = self._head_count = 0
        self._stop_head_deadline()
        self._head_deadline = self.loop.call_later(self._limits.timeout, self._head_timed_out)

    def _stop_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _count(self, size: int, *, headers: int) -> None:
        self._head_bytes += size
        self._head_count += headers
        if self._head_bytes > self._limits.max_bytes:
            self._refusal = (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, self._too_large())
            raise _HeadRefused
        if self._head_count > self._limits.max_count:
            detail = f"more than {self._limits.max_count} request headers"
            self._refusal = (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, detail)
            raise _HeadRefused

    def _too_large(self) -> str:
        return f"the request line and headers are larger than {self._limits.max_bytes} bytes"

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self._head_bytes == 0 and self._head_count == 0 and self.cycle is None:
            self.transport.close()  # connected and said nothing: nothing to answer
            return
        detail = f"the request line and headers took over {self._limits.timeout:g} seconds"
        self._refuse(HTTPStatus.REQUEST_TIMEOUT, detail)

    def _refuse(self, status: HTTPStatus, detail: str) -> None:
        self._refusal = (status, detail)
        self._send_refusal()

    def _send_refusal(self) -> None:
        """Problem details, then close: what follows on this connection cannot be trusted."""
        assert self._refusal is not None  # noqa: S101
        self._stop_head_deadline()
        status, detail = self._refusal
        body = json.dumps(
            {"type": "about:blank", "title": status.phrase, "status": status, "detail": detail}
        ).encode()
        head = [f"HTTP/1.1 {status.value} {status.phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/problem+json",
            b"content-length: " + str(len(body)).encode(),
            b"x-content-type-options: nosniff",
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        # Closing now, with the client's bytes still arriving, would answer them with
        # a reset that can destroy the response before the client reads it. Close our
        # side for writing, and drop what arrives for a moment longer (nginx's
        # lingering close).
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()
