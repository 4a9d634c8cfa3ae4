"""Where a kind of background work keeps its state: the columns every runner needs."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement
from sqlalchemy.orm import InstrumentedAttribute

from app.models.base import Base, TaskStatus


# eq=False: hashed by identity, so statements can be cached per TaskState (the
# attributes overload == to build SQL, which a generated __eq__ would misuse).
@dataclass(frozen=True, eq=False)
class TaskState:
    """The state columns of one kind of work, in the row that work is about."""

    model: type[Base]
    id: InstrumentedAttribute[uuid.UUID]
    created_at: InstrumentedAttribute[datetime]
    # Nullable where the work is optional: NULL means none is owed.
    status: InstrumentedAttribute[TaskStatus | None]
    attempts: InstrumentedAttribute[int]
    next_attempt_at: InstrumentedAttribute[datetime | None]
    lease_until: InstrumentedAttribute[datetime | None]
    done_at: InstrumentedAttribute[datetime | None]
    failed_at: InstrumentedAttribute[datetime | None]
    last_error: InstrumentedAttribute[str | None]
    # Which rows of the table are this kind's, when a table holds several kinds
    # (notifications: one kind per channel, each with its own concurrency limit).
    # Every statement over the state adds these conditions.
    where: tuple[ColumnElement[bool], ...] = ()
