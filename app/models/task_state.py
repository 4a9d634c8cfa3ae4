"""A kind of background work as the database sees it: its name, and the columns of its state.

Every kind keeps its state in the row the work is about (a user owes a welcome
email, an upload its import), under the five statuses of TaskStatus. The
descriptor names those columns once, and says what each transition writes, so
no repository spells a state out by hand.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_
from sqlalchemy.orm import InstrumentedAttribute

from app.models.base import Base, TaskStatus


# eq=False: hashed by identity, so statements can be cached per TaskState (the
# attributes overload == to build SQL, which a generated __eq__ would misuse).
@dataclass(frozen=True, eq=False)
class TaskState:
    """The state columns of one kind of work, in the row that work is about."""

    # The kind's name: the admin API's `kind`, the metrics' `kind` label.
    name: str
    model: type[Base]
    id: InstrumentedAttribute[uuid.UUID]
    created_at: InstrumentedAttribute[datetime]
    # Nullable where the work is optional: NULL means none is owed.
    status: InstrumentedAttribute[TaskStatus | None]
    attempts: InstrumentedAttribute[int]
    next_attempt_at: InstrumentedAttribute[datetime | None]
    lease_until: InstrumentedAttribute[datetime | None]
    succeeded_at: InstrumentedAttribute[datetime | None]
    failed_at: InstrumentedAttribute[datetime | None]
    last_error: InstrumentedAttribute[str | None]
    # Which rows of the table are this kind's, when a table holds several kinds
    # (notifications: one kind per channel, each with its own concurrency limit).
    # Every statement over the state adds these conditions.
    where: tuple[ColumnElement[bool], ...] = ()

    def owed(self, now: datetime) -> dict[str, Any]:
        """A new row's state: the work owed, due `now`, not tried yet (attribute names)."""
        return {
            self.status.key: TaskStatus.PENDING,
            self.attempts.key: 0,
            self.next_attempt_at.key: now,
        }

    def not_owed(self) -> dict[str, Any]:
        """A new row's state where the work is optional and none is owed."""
        return {self.status.key: None, self.attempts.key: 0, self.next_attempt_at.key: None}

    def rearmed(self, now: datetime) -> dict[str, Any]:
        """The work owed afresh, as if new: no attempt made, no outcome recorded.

        Both a retry of a dead letter and a resent welcome email start here, so
        neither shows the error of the run it replaces.
        """
        return {
            **self.owed(now),
            self.lease_until.key: None,
            self.succeeded_at.key: None,
            self.failed_at.key: None,
            self.last_error.key: None,
        }

    def fenced(self, row_id: Any, lease_until: Any) -> ColumnElement[bool]:
        """The row, only while the run whose lease ends at `lease_until` still owns it.

        The lease a claim (or its last renewal) wrote is the fencing token: once
        it has run out and another run has claimed the row, the token changed,
        and a write under the old one matches nothing. The status alone cannot
        tell the two runs apart: both see `running`.
        """
        return self.mine(
            self.id == row_id,
            self.status == TaskStatus.RUNNING,
            self.lease_until == lease_until,
        )

    def mine(self, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
        """The conditions, on this kind's rows only (see `where`)."""
        return and_(*self.where, *conditions)
