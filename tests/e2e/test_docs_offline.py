"""Swagger UI and ReDoc in a real browser that can reach nothing but the service.

Debian's Chromium, driven by Playwright, resolves the service's name to
loopback and every other name to nothing, as on an air-gapped machine. The
service answers as the embedded default (`python -m app serve`), under a
name that is not localhost, so nothing in the pages gets a localhost pass.
Swagger UI's Authorize button takes an API key, and Try it out then sends it.
"""

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request, async_playwright

from tests.support.keys import SERVER_KEY
from tests.support.server import ServerProcess

CHROMIUM = "/usr/bin/chromium"
HOST = "signup-service.test"  # resolved to 127.0.0.1 by the browser alone
# An operation that needs a key: GET /admin/tasks.
NEEDS_A_KEY = "#operations-admin-tasks_overview_admin_tasks_get"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("docs")
    env = {"DATA_DIR": str(folder / "data"), "BOOTSTRAP_API_KEY": SERVER_KEY}
    process = ServerProcess(env, folder / "server.log").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def spec(server: ServerProcess) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{server.base_url}/openapi.json").json()
    return document


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is not installed")
    async with async_playwright() as playwright:
        offline = f"MAP {HOST} 127.0.0.1, MAP * ~NOTFOUND"
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[f"--host-resolver-rules={offline}"],
        )
        yield launched
        await launched.close()


class Traffic:
    """Every request a page made, which of them were stopped inside the browser, and
    every Content-Security-Policy violation the page reported (the service's security
    headers apply to the docs pages too)."""

    def __init__(self, page: Page, origin: str) -> None:
        self.origin = origin
        self.requested: list[str] = []
        self.blocked_by_policy: list[str] = []
        self.violations: list[str] = []
        page.on("request", self._on_request)
        page.on("requestfailed", self._on_failed)
        page.on("console", self._on_console)

    def _on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(message.text)

    def _on_request(self, request: Request) -> None:
        self.requested.append(request.url)

    def _on_failed(self, request: Request) -> None:
        if request.failure == "csp":
            self.blocked_by_policy.append(request.url)

    def elsewhere(self) -> list[str]:
        """Requests that left for anywhere but the service (blob: URLs never leave)."""
        return [
            url
            for url in self.requested
            if urlsplit(url).scheme in ("http", "https")
            and not url.startswith(self.origin)
            and url not in self.blocked_by_policy
        ]


async def open_page(browser: Browser, server: ServerProcess, path: str) -> tuple[Page, Traffic]:
    """The page at `path` of the service, as the browser reaches it, and what it requested."""
    origin = f"http://{HOST}:{server.port}"
    page = await browser.new_page()
    traffic = Traffic(page, origin)
    await page.goto(origin + path)
    return page, traffic


def operations(spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (method.upper(), path, operation["operationId"])
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]


async def test_swagger_ui_renders_every_operation_offline_and_runs_the_signup_example(
    browser: Browser, server: ServerProcess, spec: dict[str, Any]
) -> None:
    page, traffic = await open_page(browser, server, "/docs")

    blocks = page.locator(".opblock")
    await blocks.nth(len(operations(spec)) - 1).wait_for()
    shown = {
        (await block.locator(".opblock-summary-method").inner_text(),
         await block.locator(".opblock-summary-path").get_attribute("data-path"))
        for block in await blocks.all()
    }  # fmt: skip
    # Execute the prefilled POST /signups example, as a first-time user would.
    signup = page.locator("#operations-signups-create_signup_signups_post")
    await signup.locator(".opblock-summary").click()
    await signup.get_by_role("button", name="Try it out").click()
    await signup.get_by_role("button", name="Execute").click()
    status = signup.locator(".live-responses-table tr.response .response-col_status")

    assert shown == {(method, path) for method, path, _ in operations(spec)}
    assert await status.inner_text(timeout=10_000) == "201"
    assert traffic.elsewhere() == []
    assert traffic.violations == []


async def test_redoc_renders_every_operation_offline_without_fetching_anything_elsewhere(
    browser: Browser, server: ServerProcess, spec: dict[str, Any]
) -> None:
    page, traffic = await open_page(browser, server, "/redoc")

    sections = page.locator("[data-section-id^='operation/']")
    await sections.nth(len(operations(spec)) - 1).wait_for()
    shown = {await section.get_attribute("data-section-id") for section in await sections.all()}

    assert shown == {f"operation/{operation_id}" for _, _, operation_id in operations(spec)}
    assert traffic.elsewhere() == []
    # ReDoc's "by Redocly" logo is the one thing it fetches from elsewhere; the page's
    # policy stops it before it leaves.
    assert all(urlsplit(url).hostname == "cdn.redoc.ly" for url in traffic.blocked_by_policy)
    assert all("cdn.redoc.ly" in violation for violation in traffic.violations)


async def try_it(page: Page) -> str:
    """Execute GET /admin/tasks from its panel; the status code Swagger UI shows."""
    operation = page.locator(NEEDS_A_KEY)
    await operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tr.response .response-col_status").first
    code = (await status.inner_text(timeout=10_000)).strip()
    await operation.locator("button.btn-clear").click()
    return code


async def test_authorize_takes_an_api_key_and_try_it_out_then_succeeds(
    browser: Browser, server: ServerProcess
) -> None:
    page, traffic = await open_page(browser, server, "/docs")
    operation = page.locator(NEEDS_A_KEY)
    await operation.locator(".opblock-summary").click()
    await operation.locator("button.try-out__btn").click()

    before = await try_it(page)
    await page.locator("button.authorize").first.click()
    dialog = page.locator(".dialog-ux")
    await dialog.locator("input").first.fill(SERVER_KEY)
    await dialog.locator("button.authorize").click()
    await dialog.locator("button.btn-done").click()
    after = await try_it(page)

    assert (before, after) == ("401", "200")
    assert SERVER_KEY not in server.log()
    assert traffic.elsewhere() == []
