"""Every response carries the headers an API should send; docs pages get a policy of their own."""

import base64
import hashlib
import re

import httpx
import pytest
from fastapi import FastAPI

from app.core.security_headers import docs_policy

API_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}


def assert_api_headers(response: httpx.Response) -> None:
    for name, value in API_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    assert "strict-transport-security" not in response.headers  # plain HTTP here


async def test_every_kind_of_response_carries_the_security_headers_an_api_should_send(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"})
    uploaded = await client.post(
        "/uploads", files={"file": ("p.csv", b"email,name\nbad,Bad\n", "text/csv")}
    )
    responses = [
        created,
        uploaded,
        await client.get(created.headers["location"]),
        await client.get(f"{uploaded.headers['location']}/errors.csv"),
        await client.post("/signups", json={"email": "nope", "name": "Ada"}),  # 422
        await client.post("/signups", json={"email": "ada@example.com", "name": "Ada"}),  # 409
        await client.get("/nope"),  # 404 from the router
        await client.put("/signups"),  # 405
        await client.get("/healthz"),
        await client.get("/openapi.json"),
    ]

    for response in responses:
        assert_api_headers(response)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_unexpected_error_carries_them_too(app: FastAPI) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/boom")

    assert response.status_code == 500
    assert_api_headers(response)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_strict_transport_security_is_sent_over_https_only(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as http:
        response = await http.get("/healthz")

    assert response.headers["strict-transport-security"] == "max-age=31536000"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_a_docs_page_may_run_its_own_inline_scripts_and_assets_and_nothing_else(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)

    policy = response.headers["content-security-policy"]
    assert policy == docs_policy(response.content)
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    for script in re.findall(rb"<script>(.*?)</script>", response.content, re.S):
        digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
