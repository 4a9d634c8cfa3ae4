"""The embedded mail server: when SMTP_HOST is unset, messages are saved as .eml files.

It is a real SMTP server (aiosmtpd) listening on loopback inside the service's
own event loop, so the welcome-email path is the same code as in production:
only the server at the other end differs.
"""

import asyncio
import logging
import re
import uuid
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class _SaveToFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        headers = BytesHeaderParser().parsebytes(content)
        message_id = _UNSAFE.sub("_", str(headers.get("Message-ID", "")).strip().strip("<>"))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.folder / f"{stamp}-{message_id or uuid.uuid4().hex}.eml"
        await asyncio.to_thread(_write_atomically, path, content)
        # The file, not the recipients: logs name rows by id, never people by address.
        logger.info("mail captured", extra={"fields": {"file": path.name}})
        return "250 Message accepted for delivery"


def _write_atomically(path: Path, content: bytes) -> None:
    # Readers (a person, a test) never see half a message.
    partial = path.with_suffix(".part")
    partial.write_bytes(content)
    partial.replace(path)


class MailCapture:
    """An SMTP server on 127.0.0.1 (ephemeral port) that writes each message to a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handler = _SaveToFolder(self.folder)

        def protocol() -> Any:
            return SMTP(handler, hostname="signup-service.localhost")

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info(
            "no SMTP_HOST set: capturing mail locally",
            extra={"fields": {"folder": str(self.folder.resolve()), "port": self.port}},
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
