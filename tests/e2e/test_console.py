"""The operator console in a real browser, against a real server on PostgreSQL.

One server, one SMTP server and one Chromium for the module; each test opens a
fresh browser context (a new tab's empty sessionStorage). Chromium resolves
the service's name to loopback and every other name to nothing, so any request
for somewhere else fails and is seen. Each test also takes its page's
screenshot: into a temporary folder, or with CONSOLE_SCREENSHOTS=docs/console
into the folder the README shows.
"""

import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    ViewportSize,
    expect,
    sync_playwright,
)

from app.core import migrations
from tests.support.keys import NO_RATE_LIMITS, SERVER_KEY
from tests.support.postgres import PostgresCluster
from tests.support.server import PROJECT_ROOT, ServerProcess
from tests.support.smtp import SMTPServer

CHROMIUM = "/usr/bin/chromium"
HOST = "signup-service.test"  # resolved to 127.0.0.1 by the browser alone
HOSTILE = "<img src=x onerror=alert(1)>"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
ROWS = 50_000
T = TypeVar("T")


def until(probe: Callable[[], T], *, timeout: float = 20.0, what: str = "condition") -> T:
    """Call probe until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def smtp() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(
    postgres: PostgresCluster | None, smtp: SMTPServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    if postgres is None:
        pytest.skip("PostgreSQL server binaries not installed")
    url = postgres.create_database("console")
    migrations.upgrade(url)
    folder = tmp_path_factory.mktemp("console")
    env = {
        "DATABASE_URL": url,
        "DATA_DIR": str(folder / "data"),
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "RECOVERY_INTERVAL_SECONDS": "0.5",
        "RECOVERY_GRACE_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
        "BOOTSTRAP_API_KEY": SERVER_KEY,
        **NO_RATE_LIMITS,
    }
    process = ServerProcess(env, folder / "server.log").start()
    yield process
    process.stop()
    postgres.psql('DROP DATABASE "console" WITH (FORCE)')


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def browser(server: ServerProcess) -> Iterator[Browser]:
    """Started after the server: sync Playwright holds an event loop in this thread,
    and the server's migrations need one of their own."""
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_playwright() as playwright:
        offline = f"MAP {HOST} 127.0.0.1, MAP * ~NOTFOUND"
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[f"--host-resolver-rules={offline}"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kept = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = PROJECT_ROOT / kept if kept else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Tab:
    """A page of the console in a fresh tab, and everything it did that it should not."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.requested: list[str] = []
        self.violations: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("request", self._on_request)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", self._on_dialog)

    def _on_request(self, request: Request) -> None:
        self.requested.append(request.url)

    def _on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.violations.append(f"{message.text} at {message.location}")

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: str) -> Page:
        self.page.goto(self.origin + path)
        return self.page

    def sign_in(self, key: str = SERVER_KEY) -> None:
        self.page.get_by_label("API key", exact=True).fill(key)
        self.page.get_by_role("button", name="Sign in").click()

    def assert_clean(self) -> None:
        """Nothing left for anywhere else, no policy violation, no script error, no alert."""
        elsewhere = [
            url
            for url in self.requested
            if urlsplit(url).scheme in ("http", "https") and not url.startswith(self.origin)
        ]
        assert elsewhere == []
        assert self.violations == []
        assert self.errors == []
        assert self.dialogs == []


@pytest.fixture
def open_tab(browser: Browser, server: ServerProcess) -> Iterator[Callable[..., Tab]]:
    contexts = []

    def open_tab(viewport: ViewportSize = DESKTOP) -> Tab:
        context = browser.new_context(viewport=viewport, accept_downloads=True)
        contexts.append(context)
        return Tab(context.new_page(), f"http://{HOST}:{server.port}")

    yield open_tab
    for context in contexts:
        context.close()


def cli(server: ServerProcess, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={"PATH": os.environ.get("PATH", ""), "DATABASE_URL": server.env["DATABASE_URL"]},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def sign_up(api: httpx.Client, email: str, name: str = "Ada") -> str:
    response = api.post("/signups", json={"email": email, "name": name})
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


def test_a_wrong_key_a_revoked_one_and_one_without_the_scope_are_refused_clearly(
    open_tab: Callable[..., Tab], server: ServerProcess, screenshots: Path
) -> None:
    viewer = cli(server, "api-keys", "create", "--name", "viewer", "--scope", "users:read")
    tab = open_tab()
    page = tab.open("/console")
    problem = page.locator("#sign-in-problem")

    tab.sign_in("ssk_" + "x" * 43)
    expect(problem).to_have_text(
        "Key refused. Missing, unknown or revoked API key: unknown API key"
    )
    page.screenshot(path=screenshots / "sign-in.png")
    tab.sign_in(viewer)
    expect(problem).to_contain_text("This key may not see this page.")
    expect(problem).to_contain_text("this needs the admin scope; the key 'viewer' has: users:read")
    cli(server, "api-keys", "revoke", "viewer")
    check = f"{server.base_url}/console/people/search?query=a%40b.co"
    until(
        lambda: httpx.get(check, headers={"Authorization": f"Bearer {viewer}"}).status_code == 401
    )
    tab.sign_in(viewer)
    expect(problem).to_contain_text("this API key has been revoked")

    assert page.evaluate("() => sessionStorage.getItem('signup-service.api-key')") is None
    assert page.context.cookies() == []
    expect(page.locator("#main")).to_be_hidden()
    tab.assert_clean()


def test_signed_in_the_key_stays_in_the_tab_only_and_the_counts_match_the_api(
    open_tab: Callable[..., Tab], api: httpx.Client, screenshots: Path
) -> None:
    sign_up(api, "counted@example.com")
    tab = open_tab()
    page = tab.open("/console")

    tab.sign_in()
    expect(page.locator("#counts-table")).to_be_visible()

    def shown() -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('#counts-table tbody tr')]
                .map(row => [row.dataset.kind, Object.fromEntries([...row.querySelectorAll(
                    'td[data-status]')].map(cell => [cell.dataset.status, +cell.textContent]))]))"""
        )
        return counts

    def expected() -> dict[str, dict[str, int]]:
        return {
            kind["kind"]: {**kind["counts"], "due": kind["due"]}
            for kind in api.get("/admin/tasks").json()["kinds"]
        }

    # The table refreshes itself: it shows what the API says within a refresh or two.
    until(lambda: shown() == expected(), what="the page's counts to be the API's")
    assert shown()["welcome_email"]["succeeded"] >= 1
    page.screenshot(path=screenshots / "work.png")
    storage = page.evaluate("() => ({session: {...sessionStorage}, local: {...localStorage}})")
    assert storage["session"]["signup-service.api-key"] == SERVER_KEY
    assert SERVER_KEY not in str({**storage["session"], "signup-service.api-key": None})
    assert storage["local"] == {}
    assert page.context.cookies() == []
    # Another page in the same tab needs no second sign-in.
    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#audit-table")).to_be_visible()
    tab.assert_clean()


def test_a_task_failed_by_a_550_is_retried_from_the_page_and_is_seen_to_succeed(
    open_tab: Callable[..., Tab], api: httpx.Client, smtp: SMTPServer
) -> None:
    smtp.reply_to_data("550 5.1.1 no such mailbox")
    user_id = sign_up(api, "bounced@example.com")
    until(lambda: api.get(f"/users/{user_id}").json()["welcome_email"]["status"] == "failed")
    tab = open_tab()
    page = tab.open("/console")
    tab.sign_in()
    row = page.locator(f"#task-welcome_email-{user_id}")
    expect(row).to_contain_text("550 5.1.1 no such mailbox")
    # Every status the row shows, as it changes.
    page.evaluate(
        """id => {
            window.seen = [document.getElementById(id).dataset.status];
            new MutationObserver(() => {
                const row = document.getElementById(id);
                if (row && row.dataset.status !== window.seen.at(-1)) {
                    window.seen.push(row.dataset.status);
                }
            }).observe(document.body, {subtree: true, childList: true, attributes: true});
        }""",
        f"task-welcome_email-{user_id}",
    )

    row.get_by_role("button", name="Retry").click()

    expect(row).to_have_attribute("data-status", "succeeded", timeout=20_000)
    seen = page.evaluate("() => window.seen")
    assert seen[:2] == ["failed", "pending"]
    assert seen[-1] == "succeeded"
    expect(page.locator("#alert")).to_contain_text("Retry accepted")
    assert api.get(f"/users/{user_id}").json()["welcome_email"]["status"] == "succeeded"
    audit = api.get("/admin/audit", params={"action": "task.retried"}).json()["items"]
    assert audit[0]["resource"] == f"tasks/welcome_email/{user_id}"
    assert audit[0]["actor"] == "bootstrap"
    tab.assert_clean()


def test_a_50000_row_csv_is_uploaded_and_its_bar_reaches_100_with_the_api_s_counts(
    open_tab: Callable[..., Tab], api: httpx.Client, tmp_path: Path, screenshots: Path
) -> None:
    path = tmp_path / "people-50k.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["email", "name"])
        for n in range(ROWS):
            if n % 100 == 7:
                writer.writerow([f"not-an-email-{n}", "Broken"])
            elif n % 100 == 8:
                writer.writerow([f"person{n - 2}@example.com", "Again"])
            else:
                writer.writerow([f"person{n}@example.com", f"Person {n}"])
    tab = open_tab()
    page = tab.open("/console/imports")
    tab.sign_in()
    expect(page.locator("#uploads")).to_be_visible()

    page.get_by_label("CSV file").set_input_files(path)
    page.get_by_label("Do not send").check()
    page.get_by_role("button", name="Upload").click()

    expect(page.locator("#upload-progress-text")).to_have_text("100%", timeout=30_000)
    card = page.locator("#current-import article")
    expect(card).to_have_attribute("data-status", "succeeded", timeout=60_000)
    upload_id = (card.get_attribute("id") or "").removeprefix("import-")
    upload = api.get(f"/uploads/{upload_id}").json()
    assert upload["rows_total"] == ROWS
    assert card.locator("progress").get_attribute("value") == "100"
    counts = {
        name: int(card.locator(f"[data-count={name}]").inner_text())
        for name in ("imported", "duplicate", "rejected")
    }
    assert counts == {
        "imported": upload["rows_imported"],
        "duplicate": upload["rows_duplicate"],
        "rejected": upload["rows_rejected"],
    }
    assert counts == {"imported": ROWS - 1000, "duplicate": 500, "rejected": 500}
    listed = page.locator(f"#upload-{upload_id}")
    expect(listed).to_have_attribute("data-status", "succeeded")
    # errors.csv needs the key too: the link fetches it with the key, then saves it.
    with page.expect_download() as download:
        card.get_by_role("link", name="errors.csv").click()
    saved = Path(download.value.path()).read_bytes().decode()
    assert saved.startswith("line,email,name,reason\r\n")
    assert saved.count("\n") == 501
    page.screenshot(path=screenshots / "imports.png")
    tab.assert_clean()


def test_the_audit_trail_is_filtered_by_action_actor_and_time(
    open_tab: Callable[..., Tab], api: httpx.Client, screenshots: Path
) -> None:
    sign_up(api, "audited@example.com")
    until(lambda: api.get("/admin/audit", params={"action": "user.signed_up"}).json()["items"])
    tab = open_tab()
    page = tab.open("/console/audit")
    tab.sign_in()
    expect(page.locator("#audit-table")).to_be_visible()

    page.get_by_label("Action").fill("user.signed_up")
    page.get_by_label("Actor (a key's name)").fill("bootstrap")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("caption")).to_contain_text("filtered")
    actions = page.locator("#audit-table td[data-field=action]").all_inner_texts()
    expected = api.get(
        "/admin/audit", params={"action": "user.signed_up", "actor": "bootstrap", "limit": 20}
    ).json()["items"]
    assert actions == ["user.signed_up"] * len(expected)
    page.screenshot(path=screenshots / "audit.png")
    page.get_by_label("From (UTC)").fill("2999-01-01T00:00:00")
    page.get_by_role("button", name="Filter").click()

    expect(page.locator("#audit-none")).to_have_text("No audit entries match these filters.")
    tab.assert_clean()


def test_a_user_named_with_markup_is_shown_as_text_and_no_script_runs(
    open_tab: Callable[..., Tab], api: httpx.Client, screenshots: Path
) -> None:
    user_id = sign_up(api, "Mallory@Example.com", HOSTILE)
    until(lambda: api.get(f"/users/{user_id}").json()["welcome_email"]["status"] == "succeeded")
    tab = open_tab()
    page = tab.open("/console/people")
    tab.sign_in()

    page.get_by_label("User id or exact email address").fill("mallory@EXAMPLE.com")
    page.get_by_role("button", name="Find").click()

    expect(page.locator("#person-name")).to_have_text(HOSTILE)
    assert page.locator("#person img").count() == 0
    page.get_by_role("button", name="Resend welcome email").click()
    expect(page.locator("#alert")).to_contain_text("Accepted (202)")
    expect(page.locator("#welcome-status")).to_have_text("succeeded", timeout=20_000)
    expect(page.locator("#notifications")).to_contain_text("No notifications.")
    page.screenshot(path=screenshots / "people.png")
    assert not [url for url in tab.requested if urlsplit(url).path.endswith("/x")]
    tab.assert_clean()


def test_every_page_fits_a_phone_and_every_control_has_a_label(
    open_tab: Callable[..., Tab], screenshots: Path
) -> None:
    tab = open_tab(PHONE)
    page = tab.open("/console")
    tab.sign_in()
    expect(page.locator("#counts-table")).to_be_visible()
    page.screenshot(path=screenshots / "work-phone.png")

    for path in ("/console", "/console/imports", "/console/audit", "/console/people"):
        tab.open(path)
        expect(page.locator("#main")).to_be_visible()
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter(c => c.type !== 'hidden' && c.labels.length === 0)
                .map(c => c.id || c.name)"""
        )
        assert overflow <= 0, path
        assert unlabelled == [], path
    tab.assert_clean()


def test_the_console_can_be_used_with_the_keyboard_alone(open_tab: Callable[..., Tab]) -> None:
    tab = open_tab()
    page = tab.open("/console/people")

    expect(page.get_by_label("API key", exact=True)).to_be_focused()
    page.keyboard.type(SERVER_KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("User id or exact email address")).to_be_focused()
    page.keyboard.type("nobody@example.com")
    page.keyboard.press("Enter")

    expect(page.locator("#person-none")).to_contain_text("nobody@example.com")
    tab.assert_clean()
