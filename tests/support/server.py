"""The service as a real process (`python -m app serve`), for tests that kill and restart it.

Start it with BOOTSTRAP_API_KEY in its environment (tests/e2e's `server_env` sets
tests.support.keys.SERVER_KEY): `server.client()` and `server.headers` send that key.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.postgres import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """One `python -m app serve` process with its own environment and log file."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        port: int | None = None,
        args: tuple[str, ...] = (),
        command: list[str] | None = None,
        cwd: Path = PROJECT_ROOT,
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log_path = log_path
        self.command = command or [sys.executable, "-m", "app", "serve", *args]
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Authorization with the server's bootstrap key, if it was started with one."""
        key = self.env.get("BOOTSTRAP_API_KEY")
        return {"Authorization": f"Bearer {key}"} if key else {}

    def client(self, **options: Any) -> httpx.AsyncClient:
        """An HTTP client for this server that sends its bootstrap key."""
        options.setdefault("timeout", 10)
        return httpx.AsyncClient(base_url=self.base_url, headers=self.headers, **options)

    def start(self, *, ready_path: str = "/readyz", timeout: float = 60.0) -> "ServerProcess":
        self._launch(["--port", str(self.port)])
        self.wait_until_ready(ready_path, timeout)
        return self

    def _launch(self, arguments: list[str]) -> None:
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.command, *arguments],
                env=environment,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals reach this server only, not the test runner
            )

    def wait_until_ready(self, path: str = "/readyz", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()[-4000:]}")
            try:
                if httpx.get(self.base_url + path, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready within {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9 the whole process group: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, as a deploy or `docker stop` sends, and wait for the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.terminate(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


class WorkerProcess(ServerProcess):
    """One `python -m app worker` process: no HTTP; ready once it listens for owed work."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        command: list[str] | None = None,
        cwd: Path = PROJECT_ROOT,
    ) -> None:
        command = command or [sys.executable, "-m", "app", "worker"]
        super().__init__(env, log_path, command=command, cwd=cwd)

    def start(
        self,
        *,
        ready_path: str = "",
        timeout: float = 60.0,
        ready: Callable[[], bool] | None = None,
    ) -> "WorkerProcess":
        """Start, and wait for `ready` (by default: its log says it listens, at INFO)."""
        self._launch([])
        deadline = time.monotonic() + timeout
        ready = ready or (lambda: "listening for owed work" in self.log())
        while not ready():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not ready within {timeout}s:\n{self.log()[-4000:]}")
            time.sleep(0.05)
        return self
