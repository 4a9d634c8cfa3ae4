"""Graceful shutdown: learn of SIGTERM when it arrives, and share one grace period.

uvicorn stops accepting and waits for in-flight requests (and the background
tasks they run) up to its `timeout_graceful_shutdown`, and only then runs the
lifespan shutdown. Work the recovery loop started is ours to stop: we chain
onto uvicorn's signal handlers so that loop stops claiming the moment SIGTERM
arrives, and its runs get the same grace, not a second one after it. So do
the rows requests queued for a slot (tasks.runtime.Limiter): the queue goes
on through the grace, as the requests' own tasks would have.
"""

import asyncio
import signal
import time
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown:
    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.requested = asyncio.Event()
        self._began: float | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def begin(self) -> None:
        if self._began is None:
            self._began = time.monotonic()
            self.requested.set()

    def remaining(self) -> float:
        """Grace left for in-flight work; the full grace if shutdown has not begun."""
        if self._began is None:
            return self.grace_seconds
        return max(0.0, self._began + self.grace_seconds - time.monotonic())

    def watch_signals(self) -> None:
        """Call begin() on SIGTERM or SIGINT, then hand the signal to the handler before us."""
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            self._previous[sig] = previous

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.begin)
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)

    def restore_signals(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
