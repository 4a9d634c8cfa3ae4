"""Limits per recipient: how much mail one user can be sent, whoever asks and wherever.

Counted in the database, in the transaction that owes the message, so they
hold across every process and replica, and a request that fails for another
reason uses nothing up.
"""

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.rate_limits import RateLimited
from app.repositories import recipient_quotas as quotas_repo


@dataclass(frozen=True)
class Quota:
    kind: str
    window: timedelta
    what: str  # for the 429's detail: "no more than 3 {what}"
    limit: Callable[[Settings], int]  # sends per window; 0 is no limit


WELCOME_RESENDS = Quota(
    "welcome_resend",
    timedelta(days=1),
    "welcome resends to a user a day",
    limit=lambda settings: settings.welcome_resends_per_day,
)
NOTIFICATIONS = Quota(
    "notification",
    timedelta(hours=1),
    "notifications to a user an hour",
    limit=lambda settings: settings.notifications_per_user_per_hour,
)


async def use(
    session: AsyncSession, *, quota: Quota, user_id: uuid.UUID, settings: Settings, now: datetime
) -> None:
    """Count one send in the caller's transaction, or raise RateLimited (429) with the
    seconds until the window ends."""
    limit = quota.limit(settings)
    if limit == 0:
        return
    if await quotas_repo.use_one(
        session, user_id=user_id, kind=quota.kind, limit=limit, window=quota.window, now=now
    ):
        return
    started = await quotas_repo.window_started_at(session, user_id=user_id, kind=quota.kind)
    reopens_in = (started + quota.window - now).total_seconds()
    raise RateLimited(f"no more than {limit} {quota.what}", retry_after=math.ceil(reopens_in))
