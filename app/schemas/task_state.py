"""A piece of background work's state, as the API shows it for every kind alike."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.models.base import Base, TaskStatus
from app.models.task_state import TaskState


class TaskStateRead(BaseModel):
    status: TaskStatus = Field(description="pending, running, retrying, succeeded or failed")
    attempts: int = Field(description="Attempts made so far.")
    next_attempt_at: datetime | None = Field(
        description="When a pending or retrying attempt is due."
    )
    succeeded_at: datetime | None
    failed_at: datetime | None = Field(description="When it failed for good.")
    last_error: str | None = Field(
        description="Why the last attempt failed; kept once the work has failed for good."
    )

    @staticmethod
    def fields(state: TaskState, row: Base) -> dict[str, Any]:
        """`row`'s task state under these names, read through the kind's columns."""
        return {name: getattr(row, getattr(state, name).key) for name in TaskStateRead.model_fields}
