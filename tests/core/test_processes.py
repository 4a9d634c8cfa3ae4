"""The worker processes CSV parsing runs in: separate, resilient, and gone with the server."""

import asyncio
import os
import signal
import sys
from concurrent.futures.process import BrokenProcessPool

import pytest

from app.core.processes import ProcessPool
from tests.support.server import PROJECT_ROOT
from tests.support.waiting import eventually


async def test_work_runs_in_another_process_and_its_result_or_error_comes_back() -> None:
    pool = ProcessPool(1)
    try:
        worker = await pool.run(os.getpid)

        assert worker != os.getpid()
        assert await pool.run(int, "42") == 42
        with pytest.raises(ValueError, match="invalid literal"):
            await pool.run(int, "forty-two")
    finally:
        await pool.close()


async def test_a_worker_that_dies_fails_its_call_and_the_next_call_gets_a_new_worker() -> None:
    pool = ProcessPool(1)
    try:
        first = await pool.run(os.getpid)

        with pytest.raises(BrokenProcessPool):
            await pool.run(os._exit, 1)

        assert await pool.run(os.getpid) not in {first, os.getpid()}
    finally:
        await pool.close()


async def test_workers_ignore_sigint_and_sigterm_the_server_decides_when_they_stop() -> None:
    pool = ProcessPool(1)
    try:
        worker = await pool.run(os.getpid)

        os.kill(worker, signal.SIGINT)
        os.kill(worker, signal.SIGTERM)

        assert await pool.run(os.getpid) == worker
    finally:
        await pool.close()


SERVER = """
import asyncio, os, signal, sys
from app.core.processes import ProcessPool

async def main():
    pool = ProcessPool(1)
    print(await pool.run(os.getpid), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_workers_exit_when_their_server_is_killed_outright() -> None:
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert server.stdout is not None
    worker = int(await asyncio.wait_for(server.stdout.readline(), 60))
    assert await asyncio.wait_for(server.wait(), 60) == -signal.SIGKILL

    def gone() -> bool:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return True
        return False

    await eventually(gone, timeout=10, interval=0.1, what="the orphaned worker to exit")
