"""Query parameters several list routes share: the page cursor and RFC 3339 moments.

Each is typed so that its schema says exactly what the server accepts.
"""

import re
from typing import Annotated, Any

from fastapi import Query
from pydantic import AwareDatetime, BeforeValidator, Field

# A cursor is 23 bytes in URL-safe base64 without padding: 31 characters, every
# one of which decodes to some position (app.services.cursor). Any other string
# is refused by validation, like any other malformed parameter.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{31}$"
_CURSOR_HELP = "Opaque: `next_cursor` of the last page, passed back unchanged."

CursorQuery = Annotated[str | None, Query(pattern=CURSOR_PATTERN, description=_CURSOR_HELP)]
# How many items a page holds; every list takes it, with a default of 50.
LimitQuery = Annotated[int, Query(ge=1, le=200)]

NextCursor = Annotated[
    str | None,
    Field(
        pattern=CURSOR_PATTERN,
        description="Pass as `cursor` for the next page; null at the end.",
    ),
]

# RFC 3339's date-time, as JSON Schema's `format: date-time` means it: a date, T,
# a time, and an offset. pydantic alone also takes a bare date, a naive time or a
# number of seconds since 1970.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and _RFC3339.fullmatch(value) is None:
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-11-22T10:00:00Z")
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
