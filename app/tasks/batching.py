"""Writes made together: items queue, and one write takes every item queued meanwhile.

The first item starts a writer, which waits `window` seconds for more to
join (0: the rest of this turn of the event loop), writes them all, and goes
round again while items queued during its write. What an item's caller
awaits (a future of its own) is for `write` to settle. Settles and audit
entries are written this way.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batches(Generic[T]):
    """Items of one kind, handed to `write` a batch at a time."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], *, window: float) -> None:
        self._write = write
        self._window = window
        self._queued: list[T] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, item: T) -> None:
        self._queued.append(item)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queued())

    async def _write_queued(self) -> None:
        try:
            while self._queued:
                await asyncio.sleep(self._window)
                batch, self._queued = self._queued, []
                await self._write(batch)
        finally:
            self._writer = None
