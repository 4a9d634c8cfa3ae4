"""Swagger UI and ReDoc in a real browser (Chromium), under the service's security headers.

The docs pages load their scripts from a CDN, which this machine cannot
reach: the browser's requests to it are answered with the same files, as
fastapi-offline ships them. The browser enforces the Content-Security-Policy
before any request is made, so a script or style the policy refused would
never reach the route below, and would show as a violation.
"""

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import fastapi_offline
import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

from tests.support.server import ServerProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
STATIC = Path(fastapi_offline.__file__).parent / "static"
CONTENT_TYPES = {".js": "application/javascript", ".css": "text/css"}

# CI installs Chromium (.ci/run); elsewhere, without it, these tests are skipped.
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Chromium not installed"
)


@pytest.fixture
def docs_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        {"DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING"}, tmp_path / "server.log"
    ).start()
    yield server
    server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        await launched.close()


async def serve_the_cdn_offline(route: Route) -> None:
    name = route.request.url.rsplit("/", 1)[1].split("?")[0]
    path = STATIC / name
    if path.suffix in CONTENT_TYPES and path.is_file():
        await route.fulfill(body=path.read_bytes(), content_type=CONTENT_TYPES[path.suffix])
    else:  # fonts, the favicon: not needed to work
        await route.fulfill(status=404, body=b"")


async def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """The page, and every Content-Security-Policy violation it reports."""
    page = await browser.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    await page.route("https://**/*", serve_the_cdn_offline)
    await page.goto(url)
    return page, violations


async def test_swagger_ui_renders_every_operation_and_runs_one_under_the_security_headers(
    docs_server: ServerProcess, browser: Browser
) -> None:
    page, violations = await open_page(browser, f"{docs_server.base_url}/docs")

    await page.wait_for_selector(".opblock", timeout=20_000)
    operations = await page.locator(".opblock").count()
    healthz = page.locator(".opblock", has_text="/healthz")
    await healthz.locator(".opblock-summary").click()
    await healthz.locator(".try-out__btn").click()
    await healthz.locator(".execute").click()
    status = healthz.locator(".live-responses-table tbody .response-col_status")
    await status.first.wait_for(timeout=10_000)

    assert operations >= 15
    assert (await status.first.inner_text()).strip() == "200"
    assert violations == []


async def test_redoc_renders_the_api_under_the_security_headers(
    docs_server: ServerProcess, browser: Browser
) -> None:
    page, violations = await open_page(browser, f"{docs_server.base_url}/redoc")

    heading = page.locator("h2", has_text="Sign up; the welcome email is sent in the background")
    await heading.wait_for(timeout=20_000)

    assert violations == []
