"""What the admin API shows of background work."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.models.base import TaskStatus
from app.schemas.query import NextCursor

# The must-complete kinds (app.models.TASK_STATES), by name, so the schema lists them
# (tests/tasks/test_task_kinds.py keeps the two in step). The API names a kind;
# in app.tasks a kind is its TaskKind, whose `name` this is.
TaskKindName = Literal["welcome_email", "csv_import", "notification_email", "notification_webhook"]


class TaskKindSummary(BaseModel):
    kind: TaskKindName
    counts: dict[TaskStatus, int] = Field(
        description="Rows in each status. Exact, but for `succeeded` when "
        "`succeeded_is_estimate` is true."
    )
    succeeded_is_estimate: bool = Field(
        description="Whether `counts.succeeded` is PostgreSQL's estimate from its table "
        "statistics (as ANALYZE last saw the table) rather than a count. It is from "
        "10,000 succeeded rows up, so that reading the overview costs the same however "
        "many rows are done; below that, and on SQLite, it is counted exactly."
    )
    due: int = Field(description="Rows due now: waiting for a run, or abandoned by a dead one.")
    oldest_due_age_seconds: float | None = Field(
        description="How long the oldest due row has been waiting; null when none is due."
    )


class TasksOverview(BaseModel):
    kinds: list[TaskKindSummary]


class TaskRead(BaseModel):
    kind: TaskKindName
    id: uuid.UUID
    status: TaskStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    failed_at: datetime | None = None


class FailedTaskRead(TaskRead):
    failed_at: datetime


class FailedTaskPage(BaseModel):
    items: list[FailedTaskRead]
    next_cursor: NextCursor
