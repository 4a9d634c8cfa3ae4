"""Idempotency-Key handling shared by every POST that creates something.

The key, the work and the stored response commit in one transaction: either
all of it happened (and a retry replays the response) or none of it did (and a
retry does the work). A repeated request raises Replayed, which the HTTP layer
answers with the first response (app.routers.idempotency): the services
return only what they created.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, ServiceError
from app.repositories import idempotency as idempotency_repo

KEY_LIFETIME = timedelta(hours=24)


class IdempotencyKeyReused(ServiceError):
    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency key reused with another request"


class IdempotencyKeyInProgress(Conflict):
    slug = "idempotency-key-in-progress"
    title = "A request with this idempotency key is still in progress"


@dataclass(frozen=True)
class StoredResponse:
    """A response as first sent, to be sent again for a repeated key."""

    status_code: int
    body: Any
    location: str | None = None


class Replayed(Exception):
    """The request repeats an earlier one with the same key: send `stored` again."""

    def __init__(self, stored: StoredResponse) -> None:
        super().__init__(stored.location)
        self.stored = stored


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

    async def reserve(self, session: AsyncSession, request: Any, now: datetime) -> None:
        """Take the key for this request (`request` is fingerprinted), or raise Replayed with
        the first response. Raising inside the transaction rolls it back: nothing is done."""
        if self.key is None:
            return
        stored = await _reserve(
            session, scope=self.scope, key=self.key, digest=fingerprint(request), now=now
        )
        if stored is not None:
            raise Replayed(stored)

    async def remember(
        self, session: AsyncSession, *, status_code: int, created: BaseModel, location: str
    ) -> None:
        """Store the response to replay for a repeat: `created`, as JSON, at `location`."""
        if self.key is not None:
            response = StoredResponse(status_code, created.model_dump(mode="json"), location)
            await _remember(session, scope=self.scope, key=self.key, response=response)
