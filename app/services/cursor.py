"""Opaque page cursors: the (timestamp, id) of the last item a page showed.

Clients pass `next_cursor` back unchanged; anything else is refused with 422
rather than read as some other position.
"""

import base64
import binascii
import uuid
from datetime import UTC, datetime

from app.core.errors import InvalidQuery


def encode(moment: datetime, row_id: uuid.UUID) -> str:
    raw = f"{moment.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, row_id = raw.split("|")
        when = datetime.fromisoformat(moment)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when.astimezone(UTC), uuid.UUID(row_id)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery("cursor is not one this API returned") from None
