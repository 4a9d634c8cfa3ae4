"""Prometheus metrics for background work, across one or many worker processes.

With `serve --workers N`, each worker counts in files under
PROMETHEUS_MULTIPROC_DIR (set by the CLI before the workers start) and a scrape
of any worker sums them all.
"""

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

TASKS_STARTED = Counter(
    "signup_tasks_started_total", "Attempts started (claims won), by task kind.", ["kind"]
)
TASKS_SUCCEEDED = Counter(
    "signup_tasks_succeeded_total", "Attempts that succeeded, by task kind.", ["kind"]
)
TASKS_RETRIED = Counter(
    "signup_tasks_retried_total", "Attempts that failed and will be retried.", ["kind"]
)
TASKS_FAILED = Counter(
    "signup_tasks_failed_total", "Attempts that failed for good (dead letters).", ["kind"]
)
TASK_DURATION = Histogram(
    "signup_task_duration_seconds",
    "Time from claim to settle of one attempt, its settle included, by task kind (attempts "
    "another run took over, or that shutdown cut off, are not counted).",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RECOVERY_PASSES = Counter(
    "signup_recovery_passes_total",
    "Recovery passes over one task kind's due rows, by kind (the loops and `recover` alike).",
    ["kind"],
)
RECOVERY_ERRORS = Counter(
    "signup_recovery_errors_total",
    "Recovery passes that failed (database unreachable?), by task kind.",
    ["kind"],
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def declare_kinds(kinds: Iterable[str]) -> None:
    """Show every kind's series from the start, at zero, rather than after its first event."""
    for kind in kinds:
        for metric in (
            TASKS_STARTED,
            TASKS_SUCCEEDED,
            TASKS_RETRIED,
            TASKS_FAILED,
            TASK_DURATION,
            RECOVERY_PASSES,
            RECOVERY_ERRORS,
        ):
            metric.labels(kind)


class _Backlog(Collector):
    """The due backlog per kind, as read from the database for this scrape."""

    def __init__(self, due: dict[str, int]) -> None:
        self._due = due

    def collect(self) -> Iterable[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "signup_tasks_due", "Rows due now (waiting for a run or for recovery).", labels=["kind"]
        )
        for kind, count in self._due.items():
            gauge.add_metric([kind], count)
        yield gauge


def render(due: dict[str, int]) -> bytes:
    """The text exposition: counters of this process (or of all workers), then the backlog."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        counters = generate_latest(registry)
    else:
        counters = generate_latest()
    backlog = CollectorRegistry()
    backlog.register(_Backlog(due))
    return counters + generate_latest(backlog)
