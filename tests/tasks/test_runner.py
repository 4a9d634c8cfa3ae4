"""The runner's generic parts: per-kind time limits, lease renewal, fencing, permanent errors.

Test kinds borrow the welcome email's state columns; what they perform is made up here.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.integrations.errors import TransientDeliveryError
from app.models import User
from app.models.base import TaskStatus, utcnow
from app.models.user import WELCOME_EMAIL_STATE
from app.tasks.recovery import recover_once
from app.tasks.runner import (
    Claim,
    LeaseLost,
    PermanentTaskError,
    TaskKind,
    backoff_delay,
    run_task,
)
from app.tasks.runtime import Runtime, current
from tests.support.rows import get_user, insert_user
from tests.support.waiting import eventually, eventually_async

Perform = Callable[[Runtime, Claim], Awaitable[None]]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # A short lease, so renewals and take-overs happen within a test.
    return {"task_timeout_seconds": 0.5, "task_lease_seconds": 0.6, "recovery_grace_seconds": 0}


def make_kind(
    perform: Perform, *, renews_lease: bool, timeout: float = 10.0, concurrency: int = 4
) -> TaskKind:
    return TaskKind(
        state=WELCOME_EMAIL_STATE,
        perform=perform,
        concurrency=lambda _settings: concurrency,
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


async def test_a_stale_run_cannot_settle_while_the_run_that_took_over_is_still_working(
    app: FastAPI,
) -> None:
    """The lease is the fencing token: the status alone cannot tell the two runs apart."""
    user_id = await insert_user(app, "ada@example.com")
    first_may_finish, second_inside, second_may_finish = (asyncio.Event() for _ in range(3))

    async def perform(_runtime: Runtime, claim: Claim) -> None:
        if claim.attempt == 1:
            await first_may_finish.wait()
        else:
            second_inside.set()
            await second_may_finish.wait()

    kind = make_kind(perform, renews_lease=False)
    first = asyncio.create_task(run_task(kind, user_id))

    async def lease_ran_out() -> bool:
        user = await get_user(app, user_id)
        return user.welcome_lease_until is not None and user.welcome_lease_until < utcnow()

    await eventually_async(lease_ran_out, what="the first run's lease to run out")
    second = asyncio.create_task(run_task(kind, user_id))
    await asyncio.wait_for(second_inside.wait(), timeout=5)
    first_may_finish.set()
    stale = await first
    while_second_works = await get_user(app, user_id)
    second_may_finish.set()

    assert stale is None
    assert (while_second_works.welcome_status, while_second_works.welcome_attempts) == (
        TaskStatus.RUNNING,
        2,
    )
    assert await second is TaskStatus.SUCCEEDED


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "task_max_attempts": 50,
            "task_backoff_base_seconds": 1,
            "task_backoff_max_seconds": 3,
            "task_inline_retry_seconds": 0,
        }
    ],
)
async def test_the_backoff_after_many_attempts_is_held_to_its_cap(app: FastAPI) -> None:
    """Uncapped, the 30th attempt would wait up to 2**29 seconds: 17 years."""
    user_id = await insert_user(app, "ada@example.com", welcome_attempts=29)

    async def busy(_runtime: Runtime, _claim: Claim) -> None:
        raise TransientDeliveryError("451 4.3.0 busy")

    status = await run_task(make_kind(busy, renews_lease=False), user_id)
    settled_by = utcnow()

    assert status is TaskStatus.RETRYING
    user = await get_user(app, user_id)
    assert user.welcome_attempts == 30
    assert user.welcome_next_attempt_at is not None
    assert (user.welcome_next_attempt_at - settled_by).total_seconds() <= 3


def test_backoff_is_random_up_to_the_cap_however_many_attempts_came_before() -> None:
    delays = [backoff_delay(attempt, 1.0, 600.0) for attempt in range(1, 200) for _ in range(5)]

    assert max(delays) <= 600.0
    assert min(delays) >= 0.0


async def all_succeeded(app: FastAPI, user_ids: list[uuid.UUID]) -> bool:
    users = [await get_user(app, user_id) for user_id in user_ids]
    return all(user.welcome_status is TaskStatus.SUCCEEDED for user in users)


class Gate:
    """Holds one row's attempt inside `perform`, and so its slot, until opened."""

    def __init__(self, row_id: uuid.UUID) -> None:
        self.row_id = row_id
        self.inside = asyncio.Event()
        self.opened = asyncio.Event()

    async def hold(self, claim: Claim) -> None:
        if claim.row_id == self.row_id:
            self.inside.set()
            await self.opened.wait()

    async def start(self, kind: TaskKind) -> asyncio.Task[TaskStatus | None]:
        """The row's run, once its attempt is inside."""
        run = asyncio.create_task(run_task(kind, self.row_id))
        await asyncio.wait_for(self.inside.wait(), timeout=5)
        return run


def assert_handed_back(user: User) -> None:
    assert (user.welcome_status, user.welcome_last_error) == (
        TaskStatus.RETRYING,
        "interrupted by shutdown",
    )
    assert user.welcome_next_attempt_at is not None
    assert user.welcome_next_attempt_at <= utcnow()


async def test_a_run_waiting_for_a_slot_has_not_claimed_its_row(app: FastAPI) -> None:
    """The slot comes before the claim: time spent waiting never eats into a lease."""
    ada = Gate(await insert_user(app, "ada@example.com"))
    bob = await insert_user(app, "bob@example.com")

    async def perform(_runtime: Runtime, claim: Claim) -> None:
        await ada.hold(claim)

    kind = make_kind(perform, renews_lease=False, concurrency=1)
    first = await ada.start(kind)
    assert await run_task(kind, bob) is None  # no slot free: queued for one
    assert current().limiters.of(kind).waiting == 1
    while_waiting = await get_user(app, bob)
    ada.opened.set()

    assert (while_waiting.welcome_status, while_waiting.welcome_attempts) == (
        TaskStatus.PENDING,
        0,
    )
    assert await first is TaskStatus.SUCCEEDED
    await eventually_async(
        lambda: all_succeeded(app, [bob]), what="bob's row run once ada's slot was free"
    )


async def test_a_run_with_no_free_slot_is_queued_and_returns_at_once(app: FastAPI) -> None:
    """Its caller (a request's BackgroundTask) is let go; the kind's queue runs the row
    when a slot frees, oldest first."""
    ada = Gate(await insert_user(app, "ada@example.com"))
    queued = [await insert_user(app, f"user{n}@example.com") for n in range(4)]
    performed: list[uuid.UUID] = []

    async def perform(_runtime: Runtime, claim: Claim) -> None:
        performed.append(claim.row_id)
        await ada.hold(claim)

    kind = make_kind(perform, renews_lease=False, concurrency=2)
    first = await ada.start(kind)
    blocker = asyncio.create_task(run_task(kind, await insert_user(app, "b@example.com")))
    await asyncio.sleep(0)  # the second slot is taken too
    async with asyncio.timeout(1):  # no slot to wait for: each returns at once
        statuses = [await run_task(kind, row_id) for row_id in queued]

    assert statuses == [None] * 4
    assert current().limiters.of(kind).waiting == 4
    ada.opened.set()
    await first
    await blocker
    await eventually_async(
        lambda: all_succeeded(app, queued), what="the queued rows run as slots freed"
    )
    assert [row_id for row_id in performed if row_id in queued] == queued
    assert current().limiters.of(kind).drainer is None


async def test_at_shutdown_queued_rows_stay_due_and_a_queued_run_under_way_hands_back(
    app: FastAPI,
) -> None:
    ada = Gate(await insert_user(app, "a@example.com"))
    bob, carol = await insert_user(app, "b@example.com"), await insert_user(app, "c@example.com")
    bob_inside = asyncio.Event()

    async def perform(_runtime: Runtime, claim: Claim) -> None:
        await ada.hold(claim)
        if claim.row_id == bob:
            bob_inside.set()
            await asyncio.Event().wait()  # until cut off

    kind = make_kind(perform, renews_lease=False, concurrency=1)
    first = await ada.start(kind)
    assert [await run_task(kind, bob), await run_task(kind, carol)] == [None, None]
    ada.opened.set()
    await first
    await asyncio.wait_for(bob_inside.wait(), timeout=5)

    await current().limiters.stop(patience=0.1)

    assert_handed_back(await get_user(app, bob))
    untouched = await get_user(app, carol)
    assert (untouched.welcome_status, untouched.welcome_attempts) == (TaskStatus.PENDING, 0)
    assert current().limiters.of(kind).waiting == 0


async def test_a_claim_on_its_way_when_the_queue_is_cut_off_is_finished_and_handed_back(
    app: FastAPI,
) -> None:
    """Abandoning the claim instead would leave it to timing whether the row was taken:
    an UPDATE that committed just before the cancellation arrived would leave it
    running, with no attempt, until its lease ran out."""
    if current().settings.is_sqlite:
        pytest.skip("holds a row lock; SQLite's one connection would hold the claim's too")
    ada = Gate(await insert_user(app, "a@example.com"))
    bob = await insert_user(app, "b@example.com")

    async def perform(_runtime: Runtime, claim: Claim) -> None:
        await ada.hold(claim)

    kind = make_kind(perform, renews_lease=False, concurrency=1)
    limiter = current().limiters.of(kind)
    first = await ada.start(kind)
    assert await run_task(kind, bob) is None
    drainer = limiter.drainer
    assert drainer is not None
    async with app.state.database.request_sessions() as session, session.begin():
        # Bob's row is locked: the queue's claim for it waits until this commits.
        await session.execute(update(User).where(User.id == bob).values(name="Bob"))
        ada.opened.set()
        await first
        await eventually(lambda: not limiter.queued, what="the claim for bob to be on its way")
        stopping = asyncio.create_task(current().limiters.stop(patience=0))
        await eventually(lambda: drainer.cancelling() > 0, what="the queue to be cut off")
    await stopping

    assert_handed_back(await get_user(app, bob))
    assert limiter.free


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
        await asyncio.sleep(5)  # over its limit, and a failure if the limit is gone

    status = await run_task(make_kind(forever, renews_lease=True, timeout=0.2), user_id)

    assert status is TaskStatus.RETRYING
    user = await get_user(app, user_id)
    assert user.welcome_last_error == "timed out after 0.2s"
