"""Opaque page cursors: the (timestamp, id) of the last item a page showed.

Seven bytes of microseconds since 1970 (enough until the year 4253) and the
sixteen bytes of the id, in URL-safe base64: 31 characters. Clients pass
`next_cursor` back unchanged. The schema states the shape
(app.schemas.query.CURSOR_PATTERN), and every string of that shape is some
position, so a cursor that passed validation always decodes.
"""

import base64
import uuid
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_BYTES = 7


def encode(moment: datetime, row_id: uuid.UUID) -> str:
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    raw = micros.to_bytes(_TIME_BYTES, "big") + row_id.bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position of a cursor of CURSOR_PATTERN's shape (which validation has checked)."""
    raw = base64.urlsafe_b64decode(cursor + "=")
    micros = int.from_bytes(raw[:_TIME_BYTES], "big")
    return _EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=raw[_TIME_BYTES:])
