"""Hostile clients against the real server: oversized heads, and slow or silent connections."""

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.keys import SERVER_KEY, bearer
from tests.support.server import ServerProcess
from tests.support.waiting import eventually_async

# Short limits, so a few seconds show every one of them at work.
LIMITS = {
    "HTTP_HEADER_TIMEOUT_SECONDS": "1",
    "HTTP_KEEPALIVE_TIMEOUT_SECONDS": "1",
    "HTTP_BODY_IDLE_TIMEOUT_SECONDS": "1",
    "HTTP_BODY_MIN_BYTES_PER_SECOND": "20000",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[[], ServerProcess]]:
    started: list[ServerProcess] = []

    def start() -> ServerProcess:
        # A short grace: the import the test starts need not finish before the server stops.
        env = {
            "DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "WARNING",
            "SHUTDOWN_GRACE_SECONDS": "1",
            "BOOTSTRAP_API_KEY": SERVER_KEY,
            **LIMITS,
        }
        started.append(ServerProcess(env, tmp_path / "server.log").start())
        return started[-1]

    yield start
    for process in started:
        process.stop()


async def exchange(port: int, data: bytes, *, timeout: float = 10) -> bytes:
    """Send raw bytes, and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


async def test_an_oversized_head_or_too_many_headers_is_431_and_the_server_serves_on(
    server: Callable[[], ServerProcess],
) -> None:
    port = server().port
    big = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 1024 * 1024 + b"\r\n\r\n"
    many = b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
    many += b"".join(b"X-%d: a\r\n" % n for n in range(2000)) + b"\r\n"

    for request in (big, many):
        reply = await exchange(port, request)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 ")
        assert b"content-type: application/problem+json" in head
        assert b'"status": 431' in body
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_a_body_that_arrives_with_its_head_is_not_counted_as_head(
    server: Callable[[], ServerProcess],
) -> None:
    """Head, a body larger than the head limit, and the next request, sent as one
    write, so the server reads them in one chunk: each request is answered."""
    port = server().port
    body = b'{"email": "ada@example.com", "name": "Ada"' + b" " * 40_000 + b"}"
    signup = b"POST /signups HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    signup += b"Content-Length: %d\r\n\r\n" % len(body) + body
    healthz = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

    reply = await exchange(port, signup + healthz)

    assert reply.startswith(b"HTTP/1.1 201 "), reply[:200]
    assert reply.count(b"HTTP/1.1 ") == 2
    assert b"HTTP/1.1 200 " in reply


async def test_slow_and_silent_connections_are_timed_out_while_healthz_answers_fast(
    server: Callable[[], ServerProcess],
) -> None:
    """Three dozen connections for a few seconds: ten connect and say nothing, ten
    trickle their headers, ten trickle a JSON body, six trickle an upload. Meanwhile
    /healthz keeps answering, and a 3 MB CSV upload at an ordinary pace goes through.
    The server ends every slow connection at its timeout."""
    port = server().port
    base = f"http://127.0.0.1:{port}"
    closed_after: list[float] = []

    async def slow(head: bytes, trickle: bytes, kind: str) -> None:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        try:
            while not reader.at_eof():  # a byte every 0.3 s until the server hangs up
                try:
                    async with asyncio.timeout(0.3):
                        if await reader.read(65536) == b"":
                            break
                except TimeoutError:
                    if trickle:
                        writer.write(trickle)
                        await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
        closed_after.append(time.monotonic() - started)
        assert time.monotonic() - started < 6, kind

    json_head = b"POST /signups HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    json_head += b"Content-Length: 100000\r\n\r\n{"
    upload_head = b"POST /uploads HTTP/1.1\r\nHost: t\r\n"
    upload_head += f"Authorization: Bearer {SERVER_KEY}\r\n".encode()
    upload_head += b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 9000000\r\n"
    upload_head += b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="p.csv"\r\n'
    upload_head += b"Content-Type: text/csv\r\n\r\nemail,name\n"
    connections = [
        *(slow(b"", b"", "silent") for _ in range(10)),
        *(slow(b"GET /healthz HTTP/1.1\r\n", b"X: y\r\n", "trickled head") for _ in range(10)),
        *(slow(json_head, b" ", "trickled JSON body") for _ in range(10)),
        *(slow(upload_head, b"a", "trickled upload") for _ in range(6)),
    ]

    async def probe_healthz(http: httpx.AsyncClient) -> list[float]:
        timings = []
        for _ in range(40):
            started = time.monotonic()
            assert (await http.get("/healthz")).status_code == 200
            timings.append(time.monotonic() - started)
            await asyncio.sleep(0.05)
        return timings

    rows = b"".join(b"person%d@example.com,Person %d\n" % (n, n) for n in range(100_000))

    async def at_an_ordinary_pace() -> AsyncIterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="p.csv"\r\n'
        yield b"Content-Type: text/csv\r\n\r\nemail,name\n"
        for start in range(0, len(rows), 128 * 1024):  # about 1.3 MB a second
            yield rows[start : start + 256 * 1024]
            await asyncio.sleep(0.1)
        yield b"\r\n--b--\r\n"

    async with httpx.AsyncClient(base_url=base, headers=bearer(SERVER_KEY), timeout=30) as http:
        slow_connections = asyncio.gather(*connections)
        timings = await probe_healthz(http)
        upload = await http.post(
            "/uploads",
            content=at_an_ordinary_pace(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        async with asyncio.timeout(15):  # without the limits, they would never end
            await slow_connections

        async def imported() -> bool:
            status: str = (await http.get(upload.headers["location"])).json()["status"]
            return status == "succeeded"

        await eventually_async(imported, timeout=30, what="the upload's import")

    assert len(rows) > 3_000_000
    assert upload.status_code == 202, upload.text
    assert len(closed_after) == 36
    assert max(closed_after) < 6  # each ended by the server, near its timeout
    assert statistics.median(timings) < 0.05
    assert max(timings) < 0.5
