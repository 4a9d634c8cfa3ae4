"""Four processes on one PostgreSQL, as four machines would run them: two pure web processes
(`serve` with SERVE_BACKGROUND_WORK=false) and two `worker`s, each with a DATA_DIR of its own
and no volume shared."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.test_upload_crash import assert_counts_exact, mid_import, people_csv, wait_for
from tests.support.e2e import (
    GRACEFUL_EXIT,
    assert_each_delivered_once,
    count_rows,
    welcome_statuses,
)
from tests.support.postgres import PostgresCluster, free_port
from tests.support.server import ServerProcess, WorkerProcess
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually, eventually_async

ROWS = 2_000


def own_machine(env: dict[str, str], tmp_path: Path, name: str) -> dict[str, str]:
    return {**env, "DATA_DIR": str(tmp_path / name)}


async def test_web_processes_hand_all_work_to_workers_and_a_killed_worker_s_import_is_finished(
    database: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    server_env: dict[str, str],
    start_server: Callable[..., ServerProcess],
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    cluster, url = database
    # The web processes cannot reach the mail server at all: every email is a worker's.
    web_env = {**server_env, "SERVE_BACKGROUND_WORK": "false", "SMTP_PORT": str(free_port())}
    worker_env = {
        **server_env,
        "UPLOAD_BATCH_ROWS": "20",  # many small batches: the kill lands mid-file
        "TASK_LEASE_SECONDS": "3",  # the killed worker's lease runs out soon after
        "TASK_TIMEOUT_SECONDS": "2",
        "TASK_BACKOFF_BASE_SECONDS": "0.1",
        "TASK_BACKOFF_MAX_SECONDS": "0.5",
    }
    web = [start_server(own_machine(web_env, tmp_path, f"web-{n}")) for n in (1, 2)]
    workers = [start_worker(own_machine(worker_env, tmp_path, f"worker-{n}")) for n in (1, 2)]
    # No email completes before the kill: one the killed worker had sent, but not yet
    # recorded, would rightly be sent again (at-least-once), and blur the count.
    smtp.stall()
    csv_file = tmp_path / "people.csv"
    expected = people_csv(csv_file, ROWS)

    async with web[0].client(timeout=60) as http:
        # send_welcome (the default): every imported user is owed an email.
        with csv_file.open("rb") as file:
            response = await http.post("/uploads", files={"file": ("people.csv", file)})
        assert response.status_code == 202
        location = response.headers["location"]

        async def part_imported() -> bool:
            body: dict[str, Any] = (await http.get(location)).json()
            return bool(body["status"] == "running" and 0 < body["rows_total"] < ROWS // 2)

        await eventually_async(part_imported, timeout=30, interval=0.005, what="a partial import")
        # The worker importing it is the one that started CSV processes.
        [importer] = [worker for worker in workers if children_of(worker)]
        [other] = [worker for worker in workers if worker is not importer]
        importer.kill()
        smtp.unstall()
        body = await wait_for(http, location, status="succeeded")

    assert_counts_exact(body, expected)
    assert body["attempts"] == 2
    assert count_rows(cluster, url, "users") == expected["imported"]
    # Signups on either web process: sent by the workers, not by the web processes.
    signed_up = await asyncio.gather(*(sign_up(server, n) for n, server in enumerate(web * 5)))
    total = expected["imported"] + len(signed_up)
    await eventually(
        lambda: welcome_statuses(cluster, url) == {"succeeded": total},
        timeout=60,
        interval=0.2,
        what=f"{total} welcome emails sent",
    )
    assert_each_delivered_once(smtp, total)
    for server in web:
        assert not (Path(server.env["DATA_DIR"]) / "uploads").exists()
    assert other.terminate(timeout=30) in GRACEFUL_EXIT


def children_of(process: ServerProcess) -> list[int]:
    assert process.process is not None
    pid = process.process.pid
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            children.append(int(stat.parent.name))
    return children


async def sign_up(server: ServerProcess, n: int) -> str:
    async with server.client() as http:
        response = await http.post(
            "/signups", json={"email": f"signup{n}@example.com", "name": f"Signup {n}"}
        )
    assert response.status_code == 201
    user_id: str = response.json()["id"]
    return user_id


async def test_sigterm_mid_import_a_worker_hands_it_back_and_another_finishes_it_at_once(
    database: tuple[PostgresCluster, str],
    server_env: dict[str, str],
    start_server: Callable[..., ServerProcess],
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    cluster, url = database
    # A lease far longer than the test: only the hand-back explains a prompt resume.
    worker_env = {
        **server_env,
        "SHUTDOWN_GRACE_SECONDS": "1",
        "TASK_LEASE_SECONDS": "300",
        "UPLOAD_BATCH_ROWS": "500",
    }
    web = start_server(
        own_machine({**server_env, "SERVE_BACKGROUND_WORK": "false"}, tmp_path, "web")
    )
    first = start_worker(own_machine(worker_env, tmp_path, "worker-1"))
    csv_file = tmp_path / "people.csv"
    expected = people_csv(csv_file, 100_000)

    async with web.client(timeout=60) as http:
        with csv_file.open("rb") as file:
            response = await http.post(
                "/uploads", files={"file": ("people.csv", file)}, data={"send_welcome": "false"}
            )
        location = response.headers["location"]
        await mid_import(http, location, expected["total"])
        assert await asyncio.to_thread(first.terminate, 30) in GRACEFUL_EXIT
        handed_back = (await http.get(location)).json()
        metrics_port = free_port()
        second_env = {**worker_env, "WORKER_METRICS_PORT": str(metrics_port)}
        start_worker(own_machine(second_env, tmp_path, "worker-2"))
        body = await wait_for(http, location, status="succeeded")
        # Its own counters, on its own port: a worker has no HTTP server otherwise.
        counters = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text

    assert handed_back["status"] == "retrying"
    assert 'signup_tasks_succeeded_total{kind="csv_import"} 1.0' in counters
    assert "interrupted by shutdown" in handed_back["last_error"]
    assert_counts_exact(body, expected)
    assert count_rows(cluster, url, "users") == expected["imported"]
