"""The README's run command works in a fresh copy of the project, on its embedded default."""

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.server import PROJECT_ROOT, ServerProcess
from tests.support.waiting import eventually

README = PROJECT_ROOT / "README.md"


def readme_command(prefix: str) -> list[str]:
    """The first command in a README code block that starts with `prefix`."""
    for block in re.findall(r"```(?:sh|bash|console)?\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            command = line.split(" #")[0].strip()
            if command.startswith(prefix):
                return shlex.split(command)
    raise AssertionError(f"README.md has no command starting with {prefix!r}")


def fresh_copy(destination: Path) -> Path:
    """What `git clone` would give: the files git tracks (or would track), nothing else."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = PROJECT_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


async def test_readme_run_command_serves_signups_and_captures_mail_in_a_fresh_copy(
    tmp_path: Path,
) -> None:
    if shutil.which("uv") is None:
        pytest.skip("uv is not installed")
    project = fresh_copy(tmp_path / "signup-service")
    server = ServerProcess(
        {},
        tmp_path / "server.log",
        command=readme_command("uv run python -m app serve"),
        cwd=project,
    )
    server.start(timeout=180)  # the first `uv run` creates the virtual environment
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            response = await http.post(
                "/signups", json={"email": "newcomer@example.com", "name": "Newcomer"}
            )
            assert response.status_code == 201
            user_id = response.json()["id"]
            mail_dir = project / "data" / "mail"
            [eml] = await eventually(
                lambda: list(mail_dir.glob("*.eml")), timeout=20, what="the welcome .eml file"
            )
    finally:
        server.stop()

    content = eml.read_text()
    assert f"welcome.{user_id}.1@" in content
    assert "To: newcomer@example.com" in content
    assert (project / "data" / "signup-service.db").exists()
