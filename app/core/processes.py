"""Worker processes for CPU-heavy task work (parsing and validating CSV uploads).

A thread would not do: Python code in a thread still holds the GIL, and the
event loop would stall for the length of every batch. A process pool keeps the
server answering while a million rows are validated next door.

The workers are forked from a fork server that has imported the modules they
need once (so a new pool starts in milliseconds, and never forks a process
that holds threads or open connections). They ignore SIGINT and SIGTERM: the
server decides when they stop. A worker whose server was killed outright
(kill -9, the OOM killer) notices within a second and exits, instead of
lingering.
"""

import asyncio
import functools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_SERVER_CHECK_SECONDS = 1.0


class ProcessPool:
    """`size` worker processes, started on first use and replaced if one dies."""

    def __init__(self, size: int, *, preload: Sequence[str] = ()) -> None:
        self._size = size
        self._preload = list(preload)
        self._executor: ProcessPoolExecutor | None = None

    async def run(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`function(*args, **kwargs)` in a worker; what it returns or raises comes back here."""
        executor = self._executor or self._start()
        call = functools.partial(function, *args, **kwargs)
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, call)
        except BrokenProcessPool:
            # A worker died (OOM killer?): this call fails, the next gets a new pool.
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise

    def _start(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(self._preload)
        self._executor = ProcessPoolExecutor(
            max_workers=self._size,
            mp_context=context,
            initializer=_prepare_worker,
            initargs=(os.getpid(),),
        )
        return self._executor

    async def close(self) -> None:
        """Let running calls finish, cancel queued ones, and stop the workers."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


def _prepare_worker(server: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(server,), daemon=True).start()


def _exit_with(server: int) -> None:
    """Exit once the server is gone (its fork server cannot tell us: we keep it alive)."""
    while _running(server):
        time.sleep(_SERVER_CHECK_SECONDS)
    os._exit(1)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc to ask: the signal check above will do
    return state != "Z"  # killed, and not yet reaped by its own parent
