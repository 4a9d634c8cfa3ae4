"""A throwaway PostgreSQL cluster: initdb into a temporary folder, start, stop, remove.

pytest-postgresql does much of this, but it cannot drop root privileges, and
initdb refuses to run as root; CI containers often run as root. So the cluster
is started here, as the `postgres` (or `nobody`) user when we are root.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """Where initdb and postgres live (Debian keeps them off PATH)."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (install Debian's `postgresql` package, "
        "or set PG_BINDIR to the folder holding initdb and postgres)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _unprivileged_account() -> tuple[int, int] | None:
    """The (uid, gid) to run PostgreSQL as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        return account.pw_uid, account.pw_gid
    raise PostgresUnavailable("running as root and no unprivileged account to run PostgreSQL as")


class PostgresCluster:
    """One PostgreSQL server on 127.0.0.1 with trust auth, for tests and benchmarks only."""

    user = "postgres"

    def __init__(self, *, port: int | None = None) -> None:
        self.bindir = find_bindir()
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="signup-pg-"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgres.log"
        account = _unprivileged_account()
        self._as_account: dict[str, Any] = {}
        if account is not None:
            os.chown(self.root, *account)
            self._as_account = {"user": account[0], "group": account[1], "extra_groups": []}
        self._process: subprocess.Popen[bytes] | None = None
        self._initdb()

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, cwd=self.root, **self._as_account)

    def _initdb(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self, timeout: float = 30.0) -> None:
        log = self.logfile.open("ab")
        self._process = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D", str(self.datadir),
                "-p", str(self.port),
                "-k", str(self.root),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "max_connections=300",
                # Durability is not under test here: a throwaway cluster can skip fsync.
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            **self._as_account,
            cwd=self.root,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.logfile.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                if self._accepts_queries():
                    return
            time.sleep(0.05)
        raise TimeoutError(f"postgres did not start: {self.logfile.read_text()[-2000:]}")

    def _accepts_queries(self) -> bool:
        result = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def stop(self, *, immediate: bool = False) -> None:
        """Fast shutdown (SIGINT): what an operator's `pg_ctl stop` does by default.

        `immediate` (SIGQUIT) is `pg_ctl stop -m immediate`: every backend dies at
        once, mid-statement, as in a crash; the next start recovers from the WAL.
        """
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(self.bindir / "psql"), "-X", "-q", "-A", "-t",
                "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                "-d", database, "-v", "ON_ERROR_STOP=1", "-c", sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )  # fmt: skip
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
