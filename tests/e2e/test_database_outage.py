"""PostgreSQL stopped at random moments under load: every request that meets it gets a 503."""

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.keys import NO_RATE_LIMITS
from tests.support.postgres import PostgresCluster
from tests.support.server import ServerProcess
from tests.support.smtp import SMTPServer

ROUNDS = 4
CLIENTS = 12
CSV = b"email,name\nimported@example.com,Imported\n"


async def test_stopping_postgresql_at_random_moments_under_load_never_answers_500(
    own_postgres: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    server_env: dict[str, str],
    start_server: Callable[..., ServerProcess],
    tmp_path: Path,
) -> None:
    """Rounds of: load from a dozen clients (signups, reads, notifications, uploads,
    readiness), PostgreSQL stopped at a random moment (fast or immediate shutdown),
    down for a random while, started again. No request may get a 500: every
    database failure is a 503 problem with Retry-After, and the load is served
    again once PostgreSQL is back."""
    cluster, url = own_postgres
    # The load is one key's, far past its rate limits: they are not under test here.
    server = start_server(
        {**server_env, "DATABASE_URL": url, "LOG_LEVEL": "INFO", **NO_RATE_LIMITS}
    )
    rng = random.Random(20261126)  # a reproducible schedule
    statuses: Counter[int] = Counter()
    unavailable: list[httpx.Response] = []
    numbers = itertools.count()
    users: list[str] = []
    stop_load = asyncio.Event()
    dropped: list[str] = []

    async def client(http: httpx.AsyncClient) -> None:
        while not stop_load.is_set():
            try:
                await one_request(http)
            except httpx.TransportError as exc:  # the server dropped the connection
                dropped.append(repr(exc))

    async def one_request(http: httpx.AsyncClient) -> None:
        n = next(numbers)
        kind = n % 6
        if kind in (0, 1) or not users:
            response = await http.post(
                "/signups", json={"email": f"load{n}@example.com", "name": f"Load {n}"}
            )
            if response.status_code == 201:
                users.append(response.json()["id"])
        elif kind == 2:
            response = await http.get(f"/users/{rng.choice(users)}")
        elif kind == 3:
            response = await http.post(
                f"/users/{rng.choice(users)}/notifications",
                json={"channel": "email", "subject": "Hi", "body": "There"},
            )
        elif kind == 4:
            response = await http.post("/uploads", files={"file": ("people.csv", CSV, "text/csv")})
        else:
            response = await http.get("/uploads?limit=5")
        statuses[response.status_code] += 1
        if response.status_code == 503:
            unavailable.append(response)

    async with server.client(timeout=30) as http:
        load = [asyncio.create_task(client(http)) for _ in range(CLIENTS)]
        try:
            for _ in range(ROUNDS):
                await asyncio.sleep(rng.uniform(0.3, 1.2))  # load while it is up
                await asyncio.to_thread(cluster.stop, immediate=rng.random() < 0.5)
                await asyncio.sleep(rng.uniform(0.2, 1.5))  # load while it is down
                await asyncio.to_thread(cluster.start)  # and while it starts again
            served_after = sum(statuses[code] for code in (200, 201, 202))
            deadline = time.monotonic() + 20
            while sum(statuses[code] for code in (200, 201, 202)) < served_after + 50:
                assert time.monotonic() < deadline, "the load was not served again"
                await asyncio.sleep(0.05)
        finally:
            stop_load.set()
            await asyncio.gather(*load)

    log = server.log()
    assert dropped == []
    assert statuses[500] == 0, statuses
    assert {code for code in statuses if code >= 500} <= {503}, statuses
    assert statuses[503] > 0, "no request met the outage: the test proved nothing"
    for response in unavailable:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"].isdigit()
        assert response.json()["type"] == "/problems/service-unavailable"
    assert "unhandled error" not in log
    assert "Exception in ASGI application" not in log
    assert "load1@example.com" not in log  # failing statements show no parameters
