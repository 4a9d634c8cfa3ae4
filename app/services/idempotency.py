"""Idempotency-Key handling shared by every POST that creates something.

The key, the work and the stored response commit in one transaction: either
all of it happened (and a retry replays the response) or none of it did (and a
retry does the work).
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import IdempotencyKeyInProgress, IdempotencyKeyReused
from app.repositories import idempotency as idempotency_repo

KEY_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True)
class StoredResponse:
    """A response as first sent, to be sent again for a repeated key."""

    status_code: int
    body: Any
    location: str | None = None


def fingerprint(payload: Any) -> str:
    """A digest of the validated request, so a reordered or reformatted body still matches."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _reserve(
    session: AsyncSession, *, scope: str, key: str, digest: str, now: datetime
) -> StoredResponse | None:
    """Take the key (None: go ahead) or return the first response to replay.

    Raises IdempotencyKeyReused if the key was first used with another request.
    """
    if await idempotency_repo.reserve(
        session, scope=scope, key=key, fingerprint=digest, now=now, expires_at=now + KEY_LIFETIME
    ):
        return None
    record = await idempotency_repo.get(session, scope=scope, key=key)
    if record is None or record.response_status is None:
        raise IdempotencyKeyInProgress("a request with this Idempotency-Key is still in progress")
    if record.fingerprint != digest:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was first used with a different request body; "
            "use a new key for a new request"
        )
    return StoredResponse(record.response_status, record.response_body, record.response_location)


async def _remember(
    session: AsyncSession, *, scope: str, key: str, response: StoredResponse
) -> None:
    await idempotency_repo.store_response(
        session,
        scope=scope,
        key=key,
        status=response.status_code,
        body=response.body,
        location=response.location,
    )


@dataclass(frozen=True)
class IdempotencyGuard:
    """One request's Idempotency-Key, if it sent one: reserve before the work, remember after.

    Without a key both steps do nothing, so a service reads the same either way.
    """

    scope: str
    key: str | None

    async def reserve(
        self, session: AsyncSession, request: Any, now: datetime
    ) -> StoredResponse | None:
        """The first response to replay, or None to go ahead (`request` is fingerprinted)."""
        if self.key is None:
            return None
        return await _reserve(
            session, scope=self.scope, key=self.key, digest=fingerprint(request), now=now
        )

    async def remember(self, session: AsyncSession, response: StoredResponse) -> None:
        if self.key is not None:
            await _remember(session, scope=self.scope, key=self.key, response=response)
