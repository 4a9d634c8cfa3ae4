"""/docs and /redoc name no address but the service's own; their assets come from it."""

import re

import httpx
import pytest

OUTSIDE_URL = re.compile(r"""(?:src|href)=["']?(?:https?:)?//""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_a_docs_page_loads_its_assets_from_the_service(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)

    assert response.status_code == 200
    assert OUTSIDE_URL.search(response.text) is None, response.text
    assets = re.findall(r"""(?:src|href)=["']?(/docs/assets/[^"' >]+)""", response.text)
    assert assets
    for asset in assets:
        assert (await client.get(asset)).status_code == 200, asset


async def test_redoc_keeps_images_to_the_service(client: httpx.AsyncClient) -> None:
    response = await client.get("/redoc")

    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', response.text)
    assert policy is not None
    assert policy.group(1) == "img-src 'self' data:"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("redoc.standalone.js", "text/javascript"),
        ("favicon.png", "image/png"),
    ],
)
async def test_each_asset_is_served_with_its_type_and_a_validator(
    client: httpx.AsyncClient, name: str, media_type: str
) -> None:
    response = await client.get(f"/docs/assets/{name}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["etag"]
    assert response.headers["cache-control"] == "public, max-age=86400"
    assert len(response.content) > 500


@pytest.mark.parametrize("name", ["other.js", "..%2F..%2Fpyproject.toml", "%2Fetc%2Fpasswd"])
async def test_anything_but_the_known_assets_is_404(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/docs/assets/{name}")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
