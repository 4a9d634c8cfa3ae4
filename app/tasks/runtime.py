"""The process's resources that background tasks reach by name, since they receive only ids.

The lifespan (or the `recover` command) installs one Runtime per process. Tasks
never get a request, a request session or an ORM object: that keeps them
runnable from anywhere, including a future external queue.
"""

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import Database, SessionFactory
from app.core.processes import ProcessPool
from app.integrations import webhooks
from app.integrations.mail_capture import MailCapture
from app.integrations.mailer import Mailer
from app.tasks.audit_writer import AuditWriter
from app.tasks.settling import Settlers

if TYPE_CHECKING:
    from app.tasks.runner import TaskKind

logger = logging.getLogger(__name__)

# How long shutdown waits for attempts to end, or, cut off, to hand their rows back.
_HAND_BACK_SECONDS = 5.0
# What the CSV workers import once, in the fork server, before any is forked.
_WORKER_MODULES = ("app.services.csv_reader",)


class Limiter:
    """At most `limit` runs of one task kind at work at once, and at most `backlog` waiting.

    A run takes its slot before it claims its row, so time spent waiting here
    never eats into the lease or the timeout of the attempt (contract rule 7),
    and frees it once its side effect is over, before its settle is written.
    Slots go to waiting runs first come, first served.

    A pass of recovery waits for its slots as the one coroutine holding its
    rows. A request's BackgroundTask that finds no free slot does not wait: its
    row id joins `queued`, its request is done, and the kind's drainer
    (tasks.runner) runs the queued rows as slots free, oldest first, waiting for
    slots as one run beside any recovery pass. A burst of signups then leaves
    ids waiting, not a thousand answered requests kept alive with all they
    refer to, which the garbage collector would have to walk through again and
    again.
    """

    def __init__(self, limit: int, backlog: int) -> None:
        # fast_acquire: a free slot is taken without yielding to the event loop.
        self._slots = anyio.Semaphore(limit, fast_acquire=True)
        self.backlog = backlog
        self.queued: deque[uuid.UUID] = deque()
        self.drainer: asyncio.Task[None] | None = None
        self._runs: set[asyncio.Task[Any]] = set()  # the drainer's, under way

    @property
    def waiting(self) -> int:
        """Runs waiting for a slot, and rows queued for one."""
        return self._slots.statistics().tasks_waiting + len(self.queued)

    @property
    def full(self) -> bool:
        """Too many runs already waiting: leave this one's rows to recovery."""
        return self.waiting >= self.backlog

    @property
    def free(self) -> bool:
        """A slot can be taken now, ahead of no one."""
        return self._slots.value > 0 and not self.queued

    async def acquire(self) -> None:
        """Wait for a slot."""
        await self._slots.acquire()

    def try_acquire(self) -> bool:
        """Take a free slot if there is one, without waiting."""
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            return False
        return True

    def release(self) -> None:
        self._slots.release()

    def start(self, run: Coroutine[object, None, object]) -> None:
        """Run a queued row's attempt as a task of its own (the drainer goes on claiming)."""
        task = asyncio.create_task(run)
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def stop(self, patience: float) -> None:
        """Give the queue `patience` seconds to drain and its attempts to end, as a
        request's own would get the shutdown's grace; then stop claiming (rows still
        queued stay due, for recovery) and cut off what is under way: it hands back."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while (tasks := self._under_way()) and (left := deadline - loop.time()) > 0:
            await asyncio.wait(tasks, timeout=left)  # and runs the drainer starts meanwhile
        self.queued.clear()
        for task in tasks:
            task.cancel()
        if tasks:  # a hand-back retries while the database is away: not for ever here
            await asyncio.wait(tasks, timeout=_HAND_BACK_SECONDS)
        self.drainer = None

    def _under_way(self) -> set[asyncio.Task[Any]]:
        tasks = {task for task in self._runs if not task.done()}
        if self.drainer is not None and not self.drainer.done():
            tasks.add(self.drainer)
        return tasks


class Limiters:
    """One Limiter per task kind, each made on first use with its kind's own limit."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._by_kind: dict[TaskKind, Limiter] = {}

    def of(self, kind: "TaskKind") -> Limiter:
        limiter = self._by_kind.get(kind)
        if limiter is None:
            limit = kind.concurrency(self._settings)
            limiter = Limiter(limit, self._settings.task_backlog_limit)
            self._by_kind[kind] = limiter
        return limiter

    async def stop(self, patience: float) -> None:
        await asyncio.gather(*(limiter.stop(patience) for limiter in self._by_kind.values()))


class InFlight:
    """Attempts under way in this process, so shutdown can wait for cut-off ones to hand back.

    When the grace runs out, uvicorn cancels the requests still running (and
    the background tasks in them) and goes straight on to the lifespan
    shutdown; a cancelled attempt still has to write its hand-back.
    """

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def track(self) -> Iterator[None]:
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if self._count == 0:
                self._idle.set()

    async def idle(self) -> None:
        """Return once no attempt is under way."""
        await self._idle.wait()


@dataclass(frozen=True)
class Runtime:
    """What tasks reach: fixed for the process's life (the limiters, the settlers and
    the count of attempts in flight change inside their own objects)."""

    settings: Settings
    engine: AsyncEngine  # the task pool, separate from the request pool
    sessions: SessionFactory  # sessions on that same task pool
    mailer: Mailer
    http: webhooks.WebhookClient  # one pool of connections for the process
    processes: ProcessPool  # for CPU-heavy work (CSV parsing), off the event loop
    limiters: Limiters
    settlers: Settlers  # on the task pool: each kind's settles, written together
    audit: AuditWriter  # on the task pool: audit entries, written together
    in_flight: InFlight = field(default_factory=InFlight)


_current: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    global _current  # noqa: PLW0603 - one runtime per process, by design
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no task runtime installed: tasks run inside the app or `recover`")
    return _current


@asynccontextmanager
async def open_runtime(settings: Settings, database: Database) -> AsyncIterator[Runtime]:
    """Open what tasks need: the mailer (or the embedded mail capture), the webhook
    client, and the worker processes for CPU-heavy work."""
    capture: MailCapture | None = None
    if settings.smtp_host:
        mailer = Mailer.from_settings(settings, host=settings.smtp_host, port=settings.smtp_port)
    else:
        capture = MailCapture(settings.mail_dir)
        await capture.start()
        mailer = Mailer.from_settings(settings, host=capture.host, port=capture.port)
    runtime = Runtime(
        settings=settings,
        engine=database.task_engine,
        sessions=database.task_sessions,
        mailer=mailer,
        http=webhooks.open_client(settings),
        processes=ProcessPool(settings.upload_workers, preload=_WORKER_MODULES),
        limiters=Limiters(settings),
        settlers=Settlers(database.task_engine),
        audit=AuditWriter(database.task_engine),
    )
    install(runtime)
    try:
        yield runtime
    finally:
        await runtime.limiters.stop(patience=_HAND_BACK_SECONDS)
        try:
            async with asyncio.timeout(_HAND_BACK_SECONDS):
                await runtime.in_flight.idle()
        except TimeoutError:
            logger.warning("attempts still under way at shutdown; recovery will resume them")
        install(None)
        await runtime.http.aclose()
        await runtime.processes.close()
        await mailer.close()
        if capture is not None:
            await capture.stop()
