"""A request cancelled at the end of the shutdown grace ends with a 503; any other goes on."""

import asyncio

import httpx
from fastapi import FastAPI


async def hanging_request(app: FastAPI) -> "asyncio.Task[httpx.Response]":
    """A request whose handler is running, and waits for ever."""
    started = asyncio.Event()

    @app.get("/hang")
    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await http.get("/hang")

    task = asyncio.create_task(call())
    await started.wait()
    return task


async def test_a_request_cut_off_by_the_end_of_the_grace_gets_503(app: FastAPI) -> None:
    task = await hanging_request(app)

    app.state.shutdown.begin()
    task.cancel()  # what uvicorn does when the grace is over
    response = await task

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.json()["detail"] == "The server is shutting down; retry the request."


async def test_a_cancellation_outside_a_shutdown_is_not_swallowed(app: FastAPI) -> None:
    task = await hanging_request(app)

    task.cancel()
    done = await asyncio.gather(task, return_exceptions=True)

    assert isinstance(done[0], asyncio.CancelledError)
    assert task.cancelled()
