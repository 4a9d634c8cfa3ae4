"""Idempotency-Key on the HTTP side: the header, and the replayed first response."""

from typing import Annotated, cast

from fastapi import Header, Request
from fastapi.responses import JSONResponse

from app.services.idempotency import Replayed

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeat a POST safely: the same key and body replay the first response "
        "for 24 hours; the same key with another body is refused with 422.",
    ),
]


async def replay(_request: Request, raised: Exception) -> JSONResponse:
    """The exception handler for Replayed: the first response to a repeated
    Idempotency-Key, marked as a replay."""
    stored = cast(Replayed, raised).stored
    headers = {"Idempotent-Replayed": "true"}
    if stored.location:
        headers["Location"] = stored.location
    return JSONResponse(stored.body, status_code=stored.status_code, headers=headers)
