"""The process's resources that background tasks reach by name, since they receive only ids.

The lifespan (or the `recover` command) installs one Runtime per process. Tasks
never get a request, a request session or an ORM object: that keeps them
runnable from anywhere, including a future external queue.
"""

from dataclasses import dataclass

from app.core.config import Settings
from app.core.db import SessionFactory
from app.integrations.mailer import Mailer


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    sessions: SessionFactory  # the task pool, separate from the request pool
    mailer: Mailer


_current: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    global _current  # noqa: PLW0603 - one runtime per process, by design
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no task runtime installed: tasks run inside the app or `recover`")
    return _current
