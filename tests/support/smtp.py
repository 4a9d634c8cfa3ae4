"""A real SMTP server (aiosmtpd) on loopback that records messages and injects faults.

It runs in its own thread and event loop, so a test can hold its DATA replies,
kill the app, and inspect what arrived, whatever the test's own loop is doing.
"""

import asyncio
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, TypeVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.postgres import free_port

T = TypeVar("T")


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        message = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"]).strip()


class _Handler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[ReceivedMessage] = []
        self.attempts: list[ReceivedMessage] = []  # every DATA, accepted or not
        self.data_replies: deque[str] = deque()
        self.rcpt_replies: deque[str] = deque()
        self.data_commands = 0
        self.ehlo_commands = 0
        self.delay = 0.0
        self.stall_remaining: int | None = 0  # None: stall every DATA
        self.stall_delivers = False  # released stalls answer 250 (and deliver), not 451
        self.loop: asyncio.AbstractEventLoop | None = None
        self.unstalled: asyncio.Event | None = None

    async def handle_EHLO(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        with self.lock:
            self.ehlo_commands += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            reply = self.rcpt_replies.popleft() if self.rcpt_replies else None
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        received = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=envelope.original_content or b"",
        )
        with self.lock:
            self.data_commands += 1
            self.attempts.append(received)
            stall = self.stall_remaining is None or self.stall_remaining > 0
            if self.stall_remaining:
                self.stall_remaining -= 1
        if stall:
            assert self.unstalled is not None
            await self.unstalled.wait()
            if not self.stall_delivers:
                # Like a server that hangs and then dies: no answer, nothing delivered.
                return "451 4.3.0 stalled message dropped"
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            reply = self.data_replies.popleft() if self.data_replies else "250 OK"
            if reply.startswith("250"):
                self.messages.append(received)
        return reply


class SMTPServer:
    """Start, record, inject faults, stop. Every wait has a deadline."""

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._handler = _Handler()
        self._controller: Controller | None = None

    def start(self) -> "SMTPServer":
        self._controller = Controller(
            self._handler, hostname=self.host, port=self.port, ready_timeout=10
        )
        self._controller.start()
        self._handler.loop = self._controller.loop
        self._handler.unstalled = _call_in(self._controller.loop, asyncio.Event)
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self.unstall()
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> "SMTPServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # Fault injection
    def reply_to_data(self, *replies: str) -> None:
        """Answer the next DATA commands with these replies (e.g. '451 4.3.0 busy')."""
        with self._handler.lock:
            self._handler.data_replies.extend(replies)

    def reply_to_rcpt(self, *replies: str) -> None:
        with self._handler.lock:
            self._handler.rcpt_replies.extend(replies)

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each DATA command."""
        self._handler.delay = seconds

    def stall(self, count: int | None = None) -> None:
        """Leave the next `count` DATA commands (all, if None) unanswered until unstall().

        A stalled message is never delivered, like one held by a server that then died.
        """
        with self._handler.lock:
            self._handler.stall_remaining = count

    def hold(self) -> None:
        """Hold the next DATA command's reply until unstall(), then accept the message (250)."""
        with self._handler.lock:
            self._handler.stall_delivers = True
            self._handler.stall_remaining = 1

    def unstall(self) -> None:
        """Answer stalled DATA commands (with 451) and stall no more."""
        with self._handler.lock:
            self._handler.stall_remaining = 0
        loop = self._handler.loop
        if loop is not None and self._handler.unstalled is not None:
            loop.call_soon_threadsafe(self._handler.unstalled.set)

    # Inspection
    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._handler.lock:
            return list(self._handler.messages)

    @property
    def attempted(self) -> list[ReceivedMessage]:
        """Every message a client sent DATA for, whatever the reply: retries included."""
        with self._handler.lock:
            return list(self._handler.attempts)

    @property
    def connections(self) -> int:
        """How many SMTP sessions greeted us with EHLO: one per client connection."""
        with self._handler.lock:
            return self._handler.ehlo_commands

    @property
    def data_commands(self) -> int:
        with self._handler.lock:
            return self._handler.data_commands

    def message_id_counts(self) -> Counter[str]:
        return Counter(message.message_id for message in self.messages)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._handler.loop is None:
            raise RuntimeError("SMTP server not started")
        return self._handler.loop


def _call_in(loop: asyncio.AbstractEventLoop, function: Callable[[], T]) -> T:
    """Run a function in the server's loop (where asyncio objects must be made) and return."""
    return asyncio.run_coroutine_threadsafe(_call(function), loop).result(timeout=5)


async def _call(function: Callable[[], T]) -> T:
    return function()
