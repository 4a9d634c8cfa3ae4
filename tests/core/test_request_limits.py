"""Request bodies are capped and timed: a clear 413 or 408, never a body read in full."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

PROBLEM = "application/problem+json"
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["connection"] == "close"  # the rest of the body is not read
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def test_a_10_mib_json_body_is_413_problem_before_it_is_parsed(
    client: httpx.AsyncClient,
) -> None:
    payload = {"email": "ada@example.com", "name": "Ada", "padding": "x" * 10 * 1024 * 1024}

    response = await client.post("/signups", json=payload)

    body = assert_problem(response, 413)
    assert body["detail"] == "the request body is larger than 131072 bytes"
    assert (await client.get("/healthz")).status_code == 200


async def test_a_streamed_json_body_is_refused_once_it_passes_the_limit_unread_beyond(
    client: httpx.AsyncClient,
) -> None:
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        yield b'{"email": "ada@example.com", "name": "'
        for _ in range(160):  # 10 MiB, no Content-Length
            sent.append(1)
            yield b"x" * 64 * 1024

    response = await client.post(
        "/signups", content=endless(), headers={"content-type": "application/json"}
    )

    assert_problem(response, 413)
    assert len(sent) <= 4  # read up to the limit, and no further


async def test_the_largest_valid_bodies_fit_the_default_limit(client: httpx.AsyncClient) -> None:
    """10,000 characters outside the BMP, each escaped by json.dumps as 12 bytes."""
    user = await client.post(
        "/signups",
        json={"email": "a" * 64 + "@" + "b" * 60 + ".example.com", "name": "\U0001f600" * 100},
    )
    text = json.dumps(
        {"channel": "email", "subject": "\U0001f600" * 200, "body": "\U0001f600" * 10_000}
    )

    notified = await client.post(
        f"/users/{user.json()['id']}/notifications",
        content=text,
        headers={"content-type": "application/json"},
    )

    assert len(text) > 120_000
    assert (user.status_code, notified.status_code) == (201, 202)


@pytest.mark.parametrize("settings_overrides", [{"http_body_idle_timeout_seconds": 0.3}])
async def test_a_body_that_stops_arriving_is_408_after_the_idle_timeout(
    client: httpx.AsyncClient,
) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b'{"email": "ada@example.com", '
        await asyncio.sleep(30)  # the client went quiet

    response = await client.post(
        "/signups", content=stalls(), headers={"content-type": "application/json"}
    )

    body = assert_problem(response, 408)
    assert body["detail"] == "no request body arrived for 0.3 seconds"


@pytest.mark.parametrize(
    "settings_overrides",
    [{"http_body_idle_timeout_seconds": 0.5, "http_body_min_bytes_per_second": 1000}],
)
async def test_a_trickled_body_is_408_once_it_falls_behind_the_minimum_rate(
    client: httpx.AsyncClient,
) -> None:
    async def trickles() -> AsyncIterator[bytes]:
        yield b'{"email": "ada@example.com", "name": "'
        for _ in range(200):  # a byte every 0.1 s: never idle for 0.5 s, never done
            await asyncio.sleep(0.1)
            yield b"x"

    started = asyncio.get_running_loop().time()
    response = await client.post(
        "/signups", content=trickles(), headers={"content-type": "application/json"}
    )

    body = assert_problem(response, 408)
    assert body["detail"].startswith("the request body arrived slower than 1000 bytes a second")
    assert asyncio.get_running_loop().time() - started < 3


@pytest.mark.parametrize("settings_overrides", [{"http_body_idle_timeout_seconds": 0.5}])
async def test_an_upload_streams_past_the_json_limit_under_its_own_cap(
    client: httpx.AsyncClient,
) -> None:
    rows = "".join(f"person{n}@example.com,Person {n}\n" for n in range(100_000))

    response = await client.post(
        "/uploads", files={"file": ("people.csv", f"email,name\n{rows}", "text/csv")}
    )

    assert len(rows) > 3_000_000
    assert response.status_code == 202, response.text
    assert (await client.get(response.headers["location"])).json()["rows_imported"] == 100_000
