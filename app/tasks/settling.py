"""Settles written together: one fenced UPDATE records the outcomes of many attempts.

A backlog drains a row every few milliseconds, and a statement (with its
connection checkout and round trip) per settle costs more CPU than the work it
records. So the settles of one kind queue here for a few milliseconds, and
while a write is under way, and the next write takes them all: a busy kind's
settles go in batches as large as the load makes them (tasks.batching). Each
row stays fenced by its own lease (see tasks_repo.settle); a batch only shares
the statement, never an outcome.
"""

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import single_statement
from app.models.base import TaskStatus, utcnow
from app.models.task_state import TaskState
from app.repositories import tasks as tasks_repo
from app.tasks.batching import Batches

# How long a write waits for more settles to join it: a few milliseconds on the
# way to the database, against a statement per attempt. The attempt's slot is
# free by then (see runner._Slot), so the wait holds up no other work.
SETTLE_WINDOW_SECONDS = 0.005


@dataclass(frozen=True)
class Settle:
    """One attempt's outcome, to be written under its run's lease."""

    row_id: uuid.UUID
    lease_until: datetime  # the fencing token
    status: TaskStatus
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    written: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def values(self) -> tuple[TaskStatus, str | None, datetime | None]:
        """What the settle sets: settles that set the same go in one statement."""
        return self.status, self.last_error, self.next_attempt_at


class Settler:
    """The settles of one kind of work in this process."""

    def __init__(self, engine: AsyncEngine, state: TaskState) -> None:
        self._engine = engine
        self._state = state
        self._batches = Batches(self._write, window=SETTLE_WINDOW_SECONDS)

    async def settle(self, settle: Settle) -> bool:
        """Write the outcome; False if the lease was lost to another run first.

        Raises what the write raised (a database outage, say), for the caller
        to retry. The write goes on if the caller is cancelled meanwhile.
        """
        self._batches.add(settle)
        return await asyncio.shield(settle.written)

    async def _write(self, batch: list[Settle]) -> None:
        alike: defaultdict[tuple[TaskStatus, str | None, datetime | None], list[Settle]]
        alike = defaultdict(list)
        for settle in batch:
            alike[settle.values].append(settle)
        now = utcnow()
        for (status, last_error, next_attempt_at), settles in alike.items():
            try:
                async with single_statement(self._engine) as connection:
                    settled = await tasks_repo.settle(
                        connection,
                        self._state,
                        [(settle.row_id, settle.lease_until) for settle in settles],
                        status=status,
                        now=now,
                        last_error=last_error,
                        next_attempt_at=next_attempt_at,
                    )
            except Exception as exc:  # each caller decides whether to try again
                for settle in settles:
                    settle.written.set_exception(exc)
                continue
            for settle in settles:
                settle.written.set_result(settle.row_id in settled)


class Settlers:
    """One Settler per kind of work, made on first use."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._by_state: dict[TaskState, Settler] = {}

    def of(self, state: TaskState) -> Settler:
        settler = self._by_state.get(state)
        if settler is None:
            settler = self._by_state[state] = Settler(self._engine, state)
        return settler
