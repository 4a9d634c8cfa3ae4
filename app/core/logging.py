"""Structured logging: every line carries the request id or the task it belongs to.

The context lives in a contextvar, so it follows a request into the background
tasks it schedules (they run in the same ASGI call) without being passed around.
The standard library is enough here; one formatter renders text or JSON.
"""

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_context: ContextVar[Mapping[str, Any]] = ContextVar("log_context", default={})  # noqa: B039


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields to every log line emitted inside the block (and tasks it starts)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**fields: Any) -> None:
    """Add fields for the rest of the current context (a request, a task)."""
    _context.set({**_context.get(), **fields})


# Something@something.tld: what an email address looks like in free text, such as a
# mail server's reply ("550 <ada@example.com>: no such user") kept as a task's error.
_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]+@[^\s<>()\[\]\"',;:@]+\.[^\s<>()\[\]\"',;:@.]+")
ADDRESS_REDACTED = "<address>"


# The same in a URL's query string, where the @ arrives percent-encoded
# (GET /users?email=ada%40example.com, in the access log).
_ENCODED_ADDRESS = re.compile(
    r"[^\s<>()\[\]\"',;:@?&=/]+%40[^\s<>()\[\]\"',;:@?&=/]+\.[^\s<>()\[\]\"',;:@?&=/.]+", re.I
)


def redact_addresses(text: str) -> str:
    """Logs name people by id; an address in a message from elsewhere is masked."""
    if "@" in text:
        text = _ADDRESS.sub(ADDRESS_REDACTED, text)
    if "%40" in text:
        text = _ENCODED_ADDRESS.sub(ADDRESS_REDACTED, text)
    return text


class LogFormatter(logging.Formatter):
    """Text or JSON lines with the context's fields, and no email address in either.

    The service logs ids, never addresses or names; this is the net under it,
    for text that comes from elsewhere: an SMTP reply, a driver's exception.
    """

    def __init__(self, json_lines: bool) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        fields = {**_context.get(), **getattr(record, "fields", {})}
        timestamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        message = record.getMessage()
        if self.json_lines:
            entry: dict[str, Any] = {
                "time": timestamp,
                "level": record.levelname,
                "logger": record.name,
                "message": message,
                **fields,
            }
            if record.exc_info:
                entry["exception"] = self.formatException(record.exc_info)
            return redact_addresses(json.dumps(entry, default=str))
        line = f"{timestamp} {record.levelname:<7} {record.name}: {message}"
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact_addresses(line)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Route the service's, uvicorn's and SQLAlchemy's loggers through one handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogFormatter(json_lines=fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    server_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _GraceOverIsExpected) for f in server_log.filters):
        server_log.addFilter(_GraceOverIsExpected())
    quiet_chatty_loggers()


class _GraceOverIsExpected(logging.Filter):
    """uvicorn logs the end of the shutdown grace ("Cancel 3 running task(s), timeout
    graceful shutdown exceeded") as an ERROR. It is how a shutdown that outlasts
    SHUTDOWN_GRACE_SECONDS is meant to end, and the work cut off is handed back
    for the next process: a WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith("Cancel %s running"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_chatty_loggers() -> None:
    """Keep libraries that log too much, or log data, above DEBUG whatever LOG_LEVEL says."""
    # aiosmtpd logs every SMTP command at INFO: noise next to our own mail log.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # aiosqlite logs every statement with its parameters at DEBUG: addresses,
    # webhook signing secrets. None of that belongs in a log.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    # httpx logs every request's full URL at INFO: a line per webhook delivery, and
    # some receivers put a token in their URL. The runner logs each outcome anyway.
    logging.getLogger("httpx").setLevel(logging.WARNING)
