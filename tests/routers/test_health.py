"""/healthz and /readyz, and the problem shape of errors no route raises itself."""

import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.core.migrations import head_revision
from app.main import create_app
from tests.conftest import make_settings
from tests.support.postgres import free_port
from tests.support.smtp import SMTPServer

PROBLEM = "application/problem+json"


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_head_on_a_probe_answers_200_with_the_get_headers(
    client: httpx.AsyncClient, path: str
) -> None:
    got = await client.get(path)

    response = await client.head(path)

    assert response.status_code == 200
    assert response.headers["content-type"] == got.headers["content-type"]
    assert response.headers["content-length"] == got.headers["content-length"]


async def test_readyz_reports_the_migration_at_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "migration": head_revision()}


async def serve(app: FastAPI, path: str) -> httpx.Response:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        return await http.get(path)


async def test_readyz_is_503_when_the_database_was_never_migrated(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/empty.db", smtp, tmp_path)

    response = await serve(create_app(settings), "/readyz")

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert "python -m app migrate" in response.json()["detail"]


async def test_readyz_is_503_when_the_database_is_unreachable(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/nothing"
    settings = make_settings(url, smtp, tmp_path)

    response = await serve(create_app(settings), "/readyz")

    assert response.status_code == 503
    assert response.json()["type"] == "/problems/service-unavailable"
    assert response.json()["detail"].startswith("database unreachable")


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "instance": "/nope",
    }


async def test_wrong_method_is_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.put("/signups")

    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/users/{id}", "GET, PATCH, DELETE"),
        ("POST", "/users/{id}", "GET, PATCH, DELETE"),
        ("OPTIONS", "/users/{id}/notifications", "GET, POST"),
        ("DELETE", "/uploads", "GET, POST"),
        ("POST", "/healthz", "GET, HEAD"),
    ],
)
async def test_405_allows_every_method_of_every_route_at_the_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path.format(id=uuid.uuid4()))

    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["allow"] == allow


async def test_unexpected_error_is_500_problem_without_internals(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/boom")

    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/problems/internal-error"
    assert "secret" not in response.text
    assert "secret internals" in caplog.text


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    mine = await client.get("/healthz", headers={"X-Request-ID": "trace-123"})
    unsafe = await client.get("/healthz", headers={"X-Request-ID": "bad id\x7f"})

    assert mine.headers["x-request-id"] == "trace-123"
    assert len(unsafe.headers["x-request-id"]) == 32


async def test_a_request_while_the_database_is_down_is_503_with_retry_after(
    tmp_path: Path, smtp: SMTPServer
) -> None:
    url = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/nothing"
    app = create_app(make_settings(url, smtp, tmp_path))

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        response = await http.post("/signups", json={"email": "ada@example.com", "name": "Ada"})

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["retry-after"] == "1"
    assert response.json()["detail"] == "The database is unavailable; retry shortly."
