"""Swagger UI in a real browser: its Authorize button takes an API key, and Try it out uses it.

/docs loads Swagger UI from a CDN; with no network here, the browser is served
the same files as fastapi-offline ships them. Everything else (the page, the
OpenAPI schema, the API) is the real server.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import fastapi_offline
import pytest
from playwright.sync_api import Page, Route, sync_playwright

from tests.support.keys import SERVER_KEY
from tests.support.server import ServerProcess

CHROMIUM = "/usr/bin/chromium"
SWAGGER_UI_FILES = Path(fastapi_offline.__file__).parent / "static"
CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"
OPERATION = "#operations-admin-tasks_overview_admin_tasks_get"


@pytest.fixture
def docs_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        {"DATA_DIR": str(tmp_path / "data"), "BOOTSTRAP_API_KEY": SERVER_KEY},
        tmp_path / "server.log",
    ).start()
    yield server
    server.stop()


def keep_local(base_url: str) -> Callable[[Route], None]:
    """Requests to the server go through; the CDN's are answered from the local copy;
    nothing else leaves this machine (the favicon, for one)."""

    def handle(route: Route) -> None:
        url = route.request.url
        if url.startswith(base_url):
            route.continue_()
            return
        asset = SWAGGER_UI_FILES / url.rsplit("/", 1)[1].split("?")[0]
        if url.startswith(CDN) and asset.is_file():
            route.fulfill(path=asset)
            return
        route.abort()

    return handle


def try_it(page: Page) -> str:
    """Execute GET /admin/tasks from its panel; the status code Swagger UI shows."""
    operation = page.locator(OPERATION)
    execute = operation.locator("button.execute")
    execute.click()
    status = operation.locator(".live-responses-table tr.response .response-col_status").first
    status.wait_for()
    code = status.inner_text().strip()
    operation.locator("button.btn-clear").click()
    return code


def test_authorize_takes_an_api_key_and_try_it_out_then_succeeds(
    docs_server: ServerProcess,
) -> None:
    if not Path(CHROMIUM).exists():
        message = "this test needs Debian's chromium at /usr/bin/chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            page.route("**/*", keep_local(docs_server.base_url))
            page.goto(docs_server.base_url + "/docs")
            page.locator(OPERATION).locator(".opblock-summary").click()
            page.locator(OPERATION).locator("button.try-out__btn").click()

            before = try_it(page)

            page.locator("button.authorize").first.click()
            dialog = page.locator(".dialog-ux")
            dialog.locator("input").first.fill(SERVER_KEY)
            dialog.locator("button.authorize").click()
            dialog.locator("button.btn-done").click()

            after = try_it(page)
        finally:
            browser.close()

    assert before == "401"
    assert after == "200"
    assert SERVER_KEY not in docs_server.log()
