"""Recovery passes: due work is finished, young and leased work is left alone."""

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError

from app.models.base import TaskStatus, utcnow
from app.repositories import tasks as tasks_repo
from app.tasks.recovery import recover_once
from app.tasks.runtime import current
from app.tasks.welcome_email import send_welcome_email
from tests.support.rows import ago, get_user, insert_user
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually_async

NO_GRACE: dict[str, Any] = {"recovery_grace_seconds": 0}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(NO_GRACE)


async def test_a_pass_delivers_pending_work_that_no_task_was_scheduled_for(
    app: FastAPI, smtp: SMTPServer
) -> None:
    user_id = await insert_user(app, "ada@example.com")

    report = await recover_once(current())

    assert report["welcome_email"]["due"] == 1
    assert report["welcome_email"]["succeeded"] == 1
    assert (await get_user(app, user_id)).welcome_status is TaskStatus.SUCCEEDED
    assert len(smtp.messages) == 1


def passes(kind: str) -> float:
    return REGISTRY.get_sample_value("signup_recovery_passes_total", {"kind": kind}) or 0.0


async def test_a_pass_over_every_kind_counts_one_pass_for_each_kind(app: FastAPI) -> None:
    """The loops pass over one kind at a time and `recover` over all: the count means the same."""
    kinds = ["welcome_email", "csv_import", "notification_email", "notification_webhook"]
    before = {kind: passes(kind) for kind in kinds}

    await recover_once(current())

    assert {kind: passes(kind) - before[kind] for kind in kinds} == dict.fromkeys(kinds, 1.0)


@pytest.mark.parametrize("settings_overrides", [{"recovery_grace_seconds": 60}])
async def test_a_pass_leaves_work_younger_than_the_grace_to_its_own_task(
    app: FastAPI, smtp: SMTPServer
) -> None:
    user_id = await insert_user(app, "ada@example.com")

    report = await recover_once(current())

    assert report["welcome_email"]["due"] == 0
    assert (await get_user(app, user_id)).welcome_status is TaskStatus.PENDING
    assert smtp.messages == []


async def test_a_pass_takes_over_running_work_whose_lease_expired(
    app: FastAPI, smtp: SMTPServer
) -> None:
    user_id = await insert_user(
        app,
        "ada@example.com",
        welcome_status=TaskStatus.RUNNING,
        welcome_attempts=1,
        welcome_lease_until=ago(1),
    )

    report = await recover_once(current())

    user = await get_user(app, user_id)
    assert report["welcome_email"]["succeeded"] == 1
    assert (user.welcome_status, user.welcome_attempts) == (TaskStatus.SUCCEEDED, 2)
    assert len(smtp.messages) == 1


async def test_a_pass_leaves_running_work_with_a_live_lease_alone(
    app: FastAPI, smtp: SMTPServer
) -> None:
    user_id = await insert_user(
        app,
        "ada@example.com",
        welcome_status=TaskStatus.RUNNING,
        welcome_attempts=1,
        welcome_lease_until=ago(-60),
    )

    report = await recover_once(current())

    assert report["welcome_email"]["due"] == 0
    assert (await get_user(app, user_id)).welcome_status is TaskStatus.RUNNING
    assert smtp.messages == []


async def test_a_pass_retries_work_whose_retry_time_has_come_but_not_before(
    app: FastAPI, smtp: SMTPServer
) -> None:
    due = await insert_user(
        app, "due@example.com", welcome_status=TaskStatus.RETRYING, welcome_attempts=2,
        welcome_next_attempt_at=ago(1),
    )  # fmt: skip
    later = await insert_user(
        app, "later@example.com", welcome_status=TaskStatus.RETRYING, welcome_attempts=2,
        welcome_next_attempt_at=ago(-60),
    )  # fmt: skip

    await recover_once(current())

    assert (await get_user(app, due)).welcome_status is TaskStatus.SUCCEEDED
    assert (await get_user(app, later)).welcome_status is TaskStatus.RETRYING
    assert [m.rcpt_tos for m in smtp.messages] == [["due@example.com"]]


@pytest.mark.parametrize("settings_overrides", [{**NO_GRACE, "task_max_attempts": 3}])
async def test_work_abandoned_on_its_last_attempt_is_failed_not_retried_forever(
    app: FastAPI, smtp: SMTPServer
) -> None:
    user_id = await insert_user(
        app, "ada@example.com", welcome_status=TaskStatus.RUNNING, welcome_attempts=3,
        welcome_lease_until=ago(1),
    )  # fmt: skip

    report = await recover_once(current())

    user = await get_user(app, user_id)
    assert report["welcome_email"]["abandoned"] == 1
    assert user.welcome_status is TaskStatus.FAILED
    assert user.welcome_failed_at is not None
    assert "stopped before settling" in (user.welcome_last_error or "")
    assert smtp.messages == []


@pytest.mark.parametrize(
    "settings_overrides", [{"recovery_grace_seconds": 0, "recovery_interval_seconds": 0.05}]
)
async def test_the_loop_in_the_app_delivers_work_left_pending(
    app: FastAPI, smtp: SMTPServer
) -> None:
    user_id = await insert_user(app, "ada@example.com")

    async def delivered() -> bool:
        return (await get_user(app, user_id)).welcome_status is TaskStatus.SUCCEEDED

    await eventually_async(delivered, what="the recovery loop to deliver")
    assert len(smtp.messages) == 1


async def test_a_run_cut_off_by_shutdown_hands_its_row_back_due_at_once(
    app: FastAPI, smtp: SMTPServer
) -> None:
    user_id = await insert_user(app, "ada@example.com")
    smtp.stall()
    run = asyncio.create_task(send_welcome_email(user_id))
    await eventually_async(_async(lambda: smtp.data_commands >= 1), what="the send to start")

    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    user = await get_user(app, user_id)
    assert user.welcome_status is TaskStatus.RETRYING
    assert user.welcome_next_attempt_at is not None
    assert user.welcome_next_attempt_at <= utcnow()
    assert user.welcome_last_error == "interrupted by shutdown"
    assert user.welcome_lease_until is None


def _async(probe: Any) -> Any:
    async def wrapped() -> Any:
        return probe()

    return wrapped


async def test_a_settle_is_retried_while_the_database_blips(
    app: FastAPI, smtp: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = await insert_user(app, "ada@example.com")
    real_settle = tasks_repo.settle
    failures = iter([OperationalError("UPDATE", {}, ConnectionError("connection lost"))] * 2)

    async def flaky_settle(*args: Any, **kwargs: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return await real_settle(*args, **kwargs)

    monkeypatch.setattr(tasks_repo, "settle", flaky_settle)

    status = await send_welcome_email(user_id)

    assert status is TaskStatus.SUCCEEDED
    assert (await get_user(app, user_id)).welcome_status is TaskStatus.SUCCEEDED
    assert len(smtp.messages) == 1


async def test_two_passes_at_once_deliver_each_due_row_once(app: FastAPI, smtp: SMTPServer) -> None:
    for n in range(30):
        await insert_user(app, f"user{n}@example.com")

    first, second = await asyncio.gather(recover_once(current()), recover_once(current()))

    passes = [first["welcome_email"], second["welcome_email"]]
    # Each pass saw some of the rows as due; whatever both saw, only one sent.
    assert sum(p["succeeded"] for p in passes) == 30
    assert sum(p["skipped"] for p in passes) == sum(p["due"] for p in passes) - 30
    counts = smtp.message_id_counts()
    assert len(counts) == 30
    assert set(counts.values()) == {1}
