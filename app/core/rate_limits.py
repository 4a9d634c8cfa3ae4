"""Request rate limits, counted by the `limits` library in memory or in Redis.

Fixed windows that open at a client's first request: one counter per window,
so a check is one increment (one round trip to Redis), and Retry-After is
exact: the window's end.
"""

import logging
import math
import time

from limits import RateLimitItem
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from app.core.errors import ServiceError

logger = logging.getLogger(__name__)


class RateLimited(ServiceError):
    """Too many requests from one address or key, or too much mail to one recipient."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"
    documented_headers = {  # noqa: RUF012 - read-only by convention
        "Retry-After": {
            "description": "Seconds until the limit lets this request through again.",
            "schema": {"type": "integer", "minimum": 1},
        }
    }

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


# After the storage fails, how long requests go unlimited before it is tried again:
# a Redis that hangs costs one request a few seconds, not every request.
_STORAGE_RETRY_SECONDS = 10.0
# A Redis that hangs must not hang every request: give up, and let the request through.
_REDIS_TIMEOUTS = {"connect_timeout": 1.0, "stream_timeout": 1.0}


class RequestLimiter:
    """Counts requests per identity (an address, a key) against configured rates."""

    def __init__(self, storage_uri: str) -> None:
        options = _REDIS_TIMEOUTS if storage_uri.startswith("redis") else {}
        storage = storage_from_string(f"async+{storage_uri}", wrap_exceptions=True, **options)
        if not isinstance(storage, Storage):  # the async+ schemes always give async storage
            raise TypeError(f"no async rate limit storage for {storage_uri}")
        self.storage = storage
        self._strategy = FixedWindowRateLimiter(self.storage)
        self._unlimited_until = -math.inf

    async def hit(self, rates: list[RateLimitItem], *identity: str, what: str) -> None:
        """Count one request; raise RateLimited (429, Retry-After) once a rate is used up.

        If the storage cannot be reached the request goes through: a limiter
        outage must not become a service outage. The per-recipient limits on
        mail live in the database and hold regardless.
        """
        if time.monotonic() < self._unlimited_until:
            return
        for rate in rates:
            try:
                if await self._strategy.hit(rate, *identity):
                    continue
                reset_at, _ = await self._strategy.get_window_stats(rate, *identity)
            except StorageError as exc:
                self._storage_unreachable(exc)
                return
            raise RateLimited(
                f"more than {rate.amount} requests per {_window(rate)} {what}",
                retry_after=math.ceil(reset_at - time.time()),
            )

    def _storage_unreachable(self, exc: StorageError) -> None:
        self._unlimited_until = time.monotonic() + _STORAGE_RETRY_SECONDS
        logger.warning(
            "rate limit storage unreachable; requests go unlimited for %.0f s: %s",
            _STORAGE_RETRY_SECONDS,
            exc,
        )


def _window(rate: RateLimitItem) -> str:
    unit = rate.GRANULARITY.name
    return unit if rate.multiples == 1 else f"{rate.multiples} {unit}s"
