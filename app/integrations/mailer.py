"""SMTP delivery through a small pool of reused aiosmtplib connections.

aiosmtplib opens a connection per `send()` call; reusing connections saves the
TCP, EHLO (and TLS and AUTH) round trips on every message. The pool also bounds
how many messages are in flight at once. No maintained library pools aiosmtplib
connections, so this is done here, in one place.
"""

import asyncio
import base64
import functools
import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass
from email import policy
from email.errors import MessageError
from email.headerregistry import BaseHeader, HeaderRegistry
from email.utils import formatdate, parseaddr

import aiosmtplib
from email_validator import EmailNotValidError, validate_email

from app.core.config import Settings
from app.integrations.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError

logger = logging.getLogger(__name__)


def mail_domain(sender: str) -> str:
    """The domain of an address like 'Name <user@example.com>' (for Message-IDs, EHLO)."""
    _, address = parseaddr(sender)
    return address.rpartition("@")[2] or "localhost"


class _CachedHeaderRegistry(HeaderRegistry):
    """The standard registry builds a new header class on every lookup; build each once.

    Same parsing and the same refusal of CR/LF in values, a third less CPU per message.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        if key not in self._classes:
            self._classes[key] = super().__getitem__(name)
        return self._classes[key]


# The SMTP policy (CRLF line ends, as the wire wants them) with the cached registry.
_POLICY = policy.SMTP.clone(header_factory=_CachedHeaderRegistry())
_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})


class NotSendable(PermanentDeliveryError):
    """The message cannot be composed or encoded as it stands: no retry can change that."""


def check_header_text(value: str) -> None:
    """Raise NotSendable unless `value`, put in a header, reaches the reader as written.

    The email package decodes RFC 2047 encoded words in a value it is given
    (`=?utf-8?q?Hi=0D=0ABcc:_x@example.com?=` is "Hi", CR LF, "Bcc: ..."), and
    the interpreters our Python range allows (CVE-2024-6923, before 3.12.5 and
    3.11.10) then write the decoded line break raw: a header of the client's
    choosing. So a value is taken only if the email package reads it back
    exactly as given, which no interpreter's folding can turn into a header.
    """
    if any(unicodedata.category(char) in _LINE_BREAKING for char in value):
        raise NotSendable("the text holds a control character or a line break")
    if str(_POLICY.header_factory("Subject", value)) != value:
        raise NotSendable(
            "the text holds an RFC 2047 encoded word (=?charset?q?...?=), which mail "
            "readers would decode rather than show: send the text itself, it is encoded for you"
        )


def ascii_address(address: str) -> str:
    """The address as SMTP without SMTPUTF8 carries it: an IDNA domain in its ASCII form.

    The service sends without SMTPUTF8, which many servers lack: an address
    that needs it (a non-ASCII local part) is refused when it is given, and one
    stored before that rule fails here, for good.
    """
    if address.isascii():
        return address
    try:
        result = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise NotSendable(f"the address cannot be sent without SMTPUTF8: {exc}") from None
    if result.ascii_email is None:  # pragma: no cover - allow_smtputf8=False guarantees one
        raise NotSendable("the address has no ASCII form")
    return result.ascii_email


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for the wire: its envelope, and its bytes as SMTP DATA carries them."""

    sender: str  # the envelope's MAIL FROM: the From header's address
    recipient: str
    data: bytes

    def as_bytes(self) -> bytes:
        return self.data


# What a stored address can be once ascii_address has run: email_validator allows no
# quoted local part, so a dot-atom, an @, and an ASCII domain. Nothing that could end
# a header line.
_ADDR_SPEC = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
# Ours to generate (see welcome_message_id): "<local@domain>", no space, no line break.
_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")
# A folded header's line breaks must each start a continuation line (RFC 5322 FWS).
_BREAK_WITHOUT_FWS = re.compile(rb"\r\n(?![ \t])")
# Body text that can go as it is (7bit): ASCII, no control characters but tab and
# line ends, no line over RFC 5322's 998 characters. Anything else goes as base64.
_SEVEN_BIT = re.compile(r"(?:[\t\x20-\x7e]{0,998}(?:\r\n|\r|\n))*[\t\x20-\x7e]{0,998}")
_LINE_END = re.compile(r"\r\n|\r|\n")


@functools.lru_cache(maxsize=1024)
def _header(name: str, value: str) -> bytes:
    """The header line as the email package folds and encodes it (RFC 2047 for non-ASCII).

    Cached: the same few senders and subjects recur on every message, and the
    email package's header machinery costs more CPU than sending the message.
    """
    check_header_text(value)
    try:
        folded = _POLICY.fold_binary(name, _POLICY.header_store_parse(name, value)[1])
    except (ValueError, MessageError) as exc:  # header parse and encoding errors among them
        raise NotSendable(f"the message cannot be composed: {exc}") from None
    # The check newer interpreters' generators make (CVE-2024-6923), made here on all.
    if _BREAK_WITHOUT_FWS.search(folded[:-2]):
        raise NotSendable("the header would fold into a header of its own")
    return folded


@functools.lru_cache(maxsize=64)
def _envelope_sender(sender: str) -> str:
    return parseaddr(sender)[1]


def _part(content_type: str, text: str) -> bytes:
    if _SEVEN_BIT.fullmatch(text):
        body = _LINE_END.sub("\r\n", text).encode("ascii")
        encoding = b"7bit"
    else:
        body = base64.encodebytes(text.encode("utf-8")).replace(b"\n", b"\r\n")
        encoding = b"base64"
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return b'Content-Type: %s; charset="utf-8"\r\nContent-Transfer-Encoding: %s\r\n\r\n%s' % (
        content_type.encode("ascii"),
        encoding,
        body,
    )


def compose(
    *, sender: str, to: str, subject: str, text: str, html: str, message_id: str
) -> OutgoingMessage:
    """A plain-text message with an HTML alternative; NotSendable if it cannot be one.

    The headers whose values come from elsewhere (sender, subject) are folded
    and encoded by the email package, which refuses CR and LF in them;
    `check_header_text` refuses the values it would decode into a line break.
    The rest are shapes we control (an ASCII address, our Message-ID, the
    date) and are checked against their pattern. No value can smuggle in a
    header of its own.
    """
    recipient = ascii_address(to)
    if not _ADDR_SPEC.fullmatch(recipient):
        raise NotSendable("the address is not one the service stores")
    if not _MESSAGE_ID.fullmatch(message_id):
        raise NotSendable("the Message-ID is malformed")
    boundary = b"=_" + secrets.token_hex(16).encode("ascii")  # never in base64 or our text
    parts = [_part("text/plain", text), _part("text/html", html)]
    if any(boundary in part for part in parts):  # pragma: no cover - 2**-128
        raise NotSendable("the body holds the MIME boundary")
    head = b"".join(
        (
            _header("From", sender),
            b"To: %s\r\n" % recipient.encode("ascii"),
            _header("Subject", subject),
            b"Date: %s\r\n" % formatdate(usegmt=True).encode("ascii"),
            b"Message-ID: %s\r\n" % message_id.encode("ascii"),
            b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="%s"\r\n'
            % boundary,
        )
    )
    body = b"".join(b"\r\n--%s\r\n%s" % (boundary, part) for part in parts)
    data = b"%s%s\r\n--%s--\r\n" % (head, body, boundary)
    return OutgoingMessage(_envelope_sender(sender), recipient, data)


class Mailer:
    """Sends messages, raising DeliveryError subclasses the task runner understands."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        pool_size: int = 8,
        local_hostname: str = "localhost",
    ) -> None:
        self.host = host
        self.port = port
        self._tls = tls
        self._username = username
        self._password = password
        self._timeout = timeout
        self._local_hostname = local_hostname
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[aiosmtplib.SMTP] = []

    @classmethod
    def from_settings(cls, settings: Settings, *, host: str, port: int) -> "Mailer":
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host=host,
            port=port,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=password,
            timeout=settings.task_timeout_seconds,
            pool_size=settings.smtp_pool_size,
            local_hostname=mail_domain(settings.mail_from),
        )

    async def send(self, message: OutgoingMessage) -> None:
        async with self._slots:
            client = self._take_idle()
            try:
                if client is None:
                    client = await self._connect()
                await client.sendmail(message.sender, [message.recipient], message.data)
            except aiosmtplib.SMTPNotSupported as exc:
                # The message needs an extension (SMTPUTF8, say) the server lacks.
                _discard(client)
                raise NotSendable(f"the SMTP server cannot take this message: {exc}") from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                _discard(client)
                raise _classify(exc) from exc
            except BaseException:
                _discard(client)
                raise
            self._idle.append(client)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
        return None

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self._tls == "tls",
            start_tls=self._tls == "starttls",
            username=self._username,
            password=self._password,
            timeout=self._timeout,
            # Without it aiosmtplib calls socket.getfqdn(): a DNS lookup per connection.
            local_hostname=self._local_hostname,
        )
        await client.connect()
        return client


def _discard(client: aiosmtplib.SMTP | None) -> None:
    # After a failure or a cancellation the connection is in an unknown state (a
    # reply may still be on its way): it must never carry the next message.
    if client is not None:
        client.close()


def _classify(exc: aiosmtplib.SMTPException | OSError) -> DeliveryError:
    """SMTP 4xx and network trouble are transient; SMTP 5xx is permanent."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in exc.recipients]
        reply = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        if any(500 <= code < 600 for code in codes):
            return PermanentDeliveryError(f"recipient refused: {reply}")
        return TransientDeliveryError(f"recipient refused: {reply}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = f"SMTP {exc.code} {exc.message}"
        if 500 <= exc.code < 600:
            return PermanentDeliveryError(reply)
        return TransientDeliveryError(reply)
    if isinstance(exc, TimeoutError):
        return TransientDeliveryError(f"SMTP timeout: {exc}")
    return TransientDeliveryError(f"SMTP connection failed: {type(exc).__name__}: {exc}")
