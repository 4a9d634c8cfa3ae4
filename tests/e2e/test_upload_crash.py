"""CSV imports against a real server process: killed mid-file, stopped mid-file, fed garbage."""

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.e2e import GRACEFUL_EXIT, StartServer, count_rows
from tests.support.postgres import PostgresCluster
from tests.support.server import ServerProcess
from tests.support.waiting import eventually_async

BOUNDARY = "e2e-boundary-5f3a"


def people_csv(path: Path, rows: int) -> dict[str, int]:
    """A CSV of `rows` rows, one in a hundred invalid and one in a hundred repeated."""
    expected = {"total": rows, "imported": 0, "duplicate": 0, "rejected": 0}
    with path.open("w") as file:
        file.write("email,name\n")
        for n in range(rows):
            if n % 100 == 42:
                file.write(f"not-an-email-{n},Person {n}\n")
                expected["rejected"] += 1
            elif n % 100 == 77:
                file.write(f"PERSON{n - 1}@Example.com,Again {n}\n")  # same as the row before
                expected["duplicate"] += 1
            else:
                file.write(f"person{n}@example.com,Person {n}\n")
                expected["imported"] += 1
    return expected


async def post_file(http: httpx.AsyncClient, path: Path) -> str:
    with path.open("rb") as file:
        response = await http.post(
            "/uploads",
            files={"file": ("people.csv", file, "text/csv")},
            data={"send_welcome": "false"},
        )
    assert response.status_code == 202, response.text
    location: str = response.headers["location"]
    return location


async def wait_for(http: httpx.AsyncClient, location: str, **wanted: Any) -> dict[str, Any]:
    async def matches() -> dict[str, Any]:
        try:
            body: dict[str, Any] = (await http.get(location)).json()
        except httpx.TransportError:
            return {}
        return body if all(body[key] == value for key, value in wanted.items()) else {}

    return await eventually_async(matches, timeout=120, interval=0.02, what=f"upload {wanted}")


async def mid_import(http: httpx.AsyncClient, location: str, total: int) -> dict[str, Any]:
    """The upload once some batches are committed and more are to come."""

    async def part_done() -> dict[str, Any]:
        body: dict[str, Any] = (await http.get(location)).json()
        return body if body["status"] == "running" and 0 < body["rows_total"] < total // 2 else {}

    return await eventually_async(part_done, timeout=60, interval=0.01, what="a partial import")


@dataclass(frozen=True)
class MidImport:
    server: ServerProcess
    location: str  # the upload's URL
    expected: dict[str, int]  # its counts, once imported
    progress: dict[str, Any]  # the upload, as seen part way


async def mid_import_of_100_000_rows(
    start_server: StartServer, env: dict[str, str], tmp_path: Path
) -> MidImport:
    """A server started with `env`, part way through importing 100,000 rows in batches
    of 500."""
    csv_file = tmp_path / "people.csv"
    expected = people_csv(csv_file, 100_000)
    server = start_server({**env, "UPLOAD_BATCH_ROWS": "500"})
    async with server.client(timeout=60) as http:
        location = await post_file(http, csv_file)
        progress = await mid_import(http, location, expected["total"])
    return MidImport(server, location, expected, progress)


def assert_counts_exact(body: dict[str, Any], expected: dict[str, int]) -> None:
    assert body["status"] == "succeeded"
    assert {key: body[f"rows_{key}"] for key in expected} == expected


async def test_kill_9_mid_import_then_restart_imports_each_row_once_with_exact_counts(
    database: tuple[PostgresCluster, str],
    server_env: dict[str, str],
    start_server: StartServer,
    tmp_path: Path,
) -> None:
    cluster, url = database
    env = {
        **server_env,
        "TASK_TIMEOUT_SECONDS": "2",
        "TASK_LEASE_SECONDS": "3",  # the dead run's lease runs out soon after the restart
    }
    first = await mid_import_of_100_000_rows(start_server, env, tmp_path)
    first.server.kill()

    # Each batch commits its rows with its counts: what is in the table is what was counted.
    assert count_rows(cluster, url, "users") <= first.progress["rows_total"] + 500
    location, expected = first.location, first.expected
    second = start_server(first.server.env)
    async with second.client(timeout=60) as http:
        body = await wait_for(http, location, status="succeeded")

    assert_counts_exact(body, expected)
    assert body["attempts"] == 2
    assert count_rows(cluster, url, "users") == expected["imported"]
    assert count_rows(cluster, url, "upload_row_errors") == expected["rejected"]


async def test_sigterm_mid_import_hands_it_back_and_a_restart_finishes_it_at_once(
    database: tuple[PostgresCluster, str],
    server_env: dict[str, str],
    start_server: StartServer,
    tmp_path: Path,
) -> None:
    cluster, url = database
    # A lease far longer than the test: only the hand-back can explain a prompt resume.
    env = {**server_env, "SHUTDOWN_GRACE_SECONDS": "1", "TASK_LEASE_SECONDS": "300"}
    stopped = await mid_import_of_100_000_rows(start_server, env, tmp_path)
    assert stopped.server.terminate(timeout=30) in GRACEFUL_EXIT

    location, expected = stopped.location, stopped.expected
    restarted = start_server(stopped.server.env)
    async with restarted.client(timeout=60) as http:
        handed_back = (await http.get(location)).json()
        body = await wait_for(http, location, status="succeeded")

    assert handed_back["status"] in {"retrying", "running", "succeeded"}
    assert "interrupted by shutdown" in (handed_back["last_error"] or "interrupted by shutdown")
    assert_counts_exact(body, expected)
    assert count_rows(cluster, url, "users") == expected["imported"]


async def test_garbage_and_oversized_uploads_are_refused_and_the_server_serves_on(
    database: tuple[PostgresCluster, str],
    server_env: dict[str, str],
    start_server: StartServer,
    tmp_path: Path,
) -> None:
    cluster, url = database
    server = start_server({**server_env, "UPLOAD_MAX_BYTES": str(1024 * 1024)})

    async def random_megabytes(count: int) -> AsyncIterator[bytes]:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="data.csv"\r\n\r\n'
        ).encode()
        for _ in range(count):
            yield os.urandom(1024 * 1024)
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    async with server.client(timeout=60) as http:
        attempts: list[tuple[dict[str, Any], int]] = [
            # 50 MB of random bytes, streamed (no length said up front): refused at the NUL.
            (
                {
                    "content": random_megabytes(50),
                    "headers": {"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
                },
                415,
            ),
            # 3 MB of CSV against a 1 MiB cap: refused by its Content-Length, unread.
            ({"files": {"file": ("big.csv", b"a@example.com,A\n" * 200_000)}}, 413),
        ]
        for request, status in attempts:
            try:
                response = await http.post("/uploads", **request)
                assert response.status_code == status
            except httpx.TransportError:
                pass  # answered early and closed while we were still sending: also fine

        assert (await http.get("/healthz")).status_code == 200
        good = await http.post(
            "/uploads", files={"file": ("ok.csv", b"email,name\nada@example.com,Ada\n")}
        )
        assert good.status_code == 202
        await wait_for(http, good.headers["location"], status="succeeded")

    assert not (tmp_path / "data" / "uploads").exists()  # nothing on a disk, ever
    assert count_rows(cluster, url, "uploads") == 1
    assert count_rows(cluster, url, "upload_chunks") == 1  # the good one's only
