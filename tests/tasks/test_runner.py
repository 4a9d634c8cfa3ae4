"""The runner's generic parts: per-kind time limits, lease renewal, fencing, permanent errors.

Test kinds borrow the welcome email's state columns; what they perform is made up here.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI

from app.models.base import TaskStatus
from app.models.user import WELCOME_STATE
from app.tasks.recovery import recover_once
from app.tasks.runner import Claim, LeaseLost, PermanentTaskError, TaskKind, run_task
from app.tasks.runtime import Runtime, current
from tests.support.rows import get_user, insert_user
from tests.support.waiting import eventually, eventually_async

Perform = Callable[[Runtime, Claim], Awaitable[None]]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # A short lease, so renewals and take-overs happen within a test.
    return {"task_timeout_seconds": 0.5, "task_lease_seconds": 0.6, "recovery_grace_seconds": 0}


def make_kind(perform: Perform, *, renews_lease: bool, timeout: float = 10.0) -> TaskKind:
    return TaskKind(
        name=f"test_{'renewing' if renews_lease else 'plain'}",
        state=WELCOME_STATE,
        perform=perform,
        concurrency=lambda _settings: 4,
        timeout=lambda _settings: timeout,
        renews_lease=renews_lease,
    )


async def recover_repeatedly(kind: TaskKind, while_running: asyncio.Task[Any]) -> list[int]:
    """Recovery passes over `kind` until the task ends; how many rows each pass found due."""
    found = []
    while not while_running.done():
        report = await recover_once(current(), {kind.name: kind})
        found.append(report[kind.name]["due"])
        await asyncio.sleep(0.05)
    return found


async def test_an_attempt_that_renews_its_lease_outlives_it_without_being_taken_over(
    app: FastAPI,
) -> None:
    user_id = await insert_user(app, "ada@example.com")
    runs = []

    async def three_leases_long(_runtime: Runtime, claim: Claim) -> None:
        runs.append(claim.attempt)
        await asyncio.sleep(1.8)

    kind = make_kind(three_leases_long, renews_lease=True)
    attempt = asyncio.create_task(run_task(kind, user_id))
    await eventually(lambda: runs == [1], what="the first attempt to start")
    found_due = await recover_repeatedly(kind, attempt)

    assert await attempt is TaskStatus.SUCCEEDED
    assert runs == [1]
    assert len(found_due) > 5
    assert set(found_due) == {0}
    user = await get_user(app, user_id)
    assert (user.welcome_status, user.welcome_attempts) == (TaskStatus.SUCCEEDED, 1)


async def test_without_renewal_an_attempt_outliving_its_lease_is_taken_over_and_fenced_out(
    app: FastAPI,
) -> None:
    user_id = await insert_user(app, "ada@example.com")
    runs = []

    async def slow_first_time(_runtime: Runtime, claim: Claim) -> None:
        runs.append(claim.attempt)
        if claim.attempt == 1:
            await asyncio.sleep(1.8)

    kind = make_kind(slow_first_time, renews_lease=False)
    first = asyncio.create_task(run_task(kind, user_id))
    await eventually(lambda: runs == [1], what="the first attempt to start")

    async def taken_over() -> bool:
        await recover_once(current(), {kind.name: kind})
        return 2 in runs

    await eventually_async(taken_over, timeout=5, what="recovery to take the row over")

    assert await first is None  # its settle was refused: the lease had moved on
    user = await get_user(app, user_id)
    assert (user.welcome_status, user.welcome_attempts) == (TaskStatus.SUCCEEDED, 2)


async def test_work_that_finds_its_lease_lost_stops_and_settles_nothing(app: FastAPI) -> None:
    user_id = await insert_user(app, "ada@example.com")

    async def fenced_out(_runtime: Runtime, _claim: Claim) -> None:
        raise LeaseLost

    status = await run_task(make_kind(fenced_out, renews_lease=True), user_id)

    assert status is None
    user = await get_user(app, user_id)
    assert (user.welcome_status, user.welcome_attempts) == (TaskStatus.RUNNING, 1)


async def test_a_permanent_task_error_fails_at_once_keeping_the_reason(app: FastAPI) -> None:
    user_id = await insert_user(app, "ada@example.com")

    async def malformed(_runtime: Runtime, _claim: Claim) -> None:
        raise PermanentTaskError("the header names no email column")

    status = await run_task(make_kind(malformed, renews_lease=False), user_id)

    assert status is TaskStatus.FAILED
    user = await get_user(app, user_id)
    assert user.welcome_attempts == 1
    assert user.welcome_last_error == "the header names no email column"
    assert user.welcome_failed_at is not None


@pytest.mark.parametrize("settings_overrides", [{"task_inline_retry_seconds": 0}])
async def test_a_kind_has_its_own_time_limit(app: FastAPI) -> None:
    user_id = await insert_user(app, "ada@example.com")

    async def forever(_runtime: Runtime, _claim: Claim) -> None:
        await asyncio.sleep(60)

    status = await run_task(make_kind(forever, renews_lease=True, timeout=0.2), user_id)

    assert status is TaskStatus.RETRYING
    user = await get_user(app, user_id)
    assert user.welcome_last_error == "timed out after 0.2s"
