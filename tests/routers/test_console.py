"""The console's routes over ASGI: pages, fragments, what they show and how (who may call
each: test_auth; in a real browser: tests/e2e/test_console.py)."""

import hashlib
import re
import uuid
from html import unescape
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.security_headers import CONSOLE_POLICY
from app.models.base import TaskStatus, utcnow
from app.routers import console
from app.schemas import examples
from app.schemas.admin import TaskKindSummary
from app.schemas.upload import UploadSummary
from tests.support.rows import insert_user
from tests.support.smtp import SMTPServer

HOSTILE = "<img src=x onerror=alert(1)>"
PAGES = list(console.PAGES)


async def sign_up(client: httpx.AsyncClient, email: str, name: str = "Ada") -> str:
    response = await client.post("/signups", json={"email": email, "name": name})
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


def cells(html: str, attribute: str) -> dict[str, str]:
    """`data-{attribute}="x">value<` pairs of a fragment, as {x: value}."""
    return dict(re.findall(rf'data-{attribute}="([^"]+)"[^>]*>([^<]*)<', html))


def assert_no_inline_code(html: str) -> None:
    """Nothing the console's policy would refuse: no inline script, style or handler."""
    assert re.search(r"<script(?![^>]*\ssrc=)", html) is None
    assert "<style" not in html
    assert re.search(r"<[^>]*\sstyle=", html) is None
    assert re.search(r"<[^>]*\son[a-z]+=", html) is None
    assert "javascript:" not in html


def test_the_vendored_htmx_is_the_pinned_release() -> None:
    served = (console.ASSETS_DIR / console.HTMX).read_bytes()

    assert hashlib.sha256(served).hexdigest() == console.HTMX_SHA256
    assert b'version:"2.0.11"' in served


@pytest.mark.parametrize("path", PAGES)
async def test_each_page_is_an_empty_shell_under_the_console_s_own_strict_policy(
    anonymous_client: httpx.AsyncClient, path: str
) -> None:
    response = await anonymous_client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONSOLE_POLICY
    assert "'unsafe-inline'" not in CONSOLE_POLICY
    assert "'unsafe-eval'" not in CONSOLE_POLICY
    assert_no_inline_code(response.text)
    scripts = re.findall(r'<script src="([^"]+)"', response.text)
    assert [script.split("?")[0] for script in scripts] == [
        f"/console/assets/{console.HTMX}",
        "/console/assets/console.js",
    ]
    # htmx configured for that policy: no style element, no eval, no scripts from fragments.
    config = re.search(r'name="htmx-config" content=\'([^\']+)\'', response.text)
    assert config is not None
    for setting in (
        '"includeIndicatorStyles": false',
        '"allowEval": false',
        '"allowScriptTags": false',
        '"historyCacheSize": 0',
    ):
        assert setting in unescape(config[1])
    assert 'for="api-key"' in response.text  # the key's field is labelled


async def test_the_assets_are_served_from_a_fixed_list_and_cached_by_version(
    anonymous_client: httpx.AsyncClient,
) -> None:
    page = (await anonymous_client.get("/console")).text
    [script] = re.findall(r'src="(/console/assets/console\.js\?v=[0-9a-f]+)"', page)

    served = await anonymous_client.get(script)
    unknown = await anonymous_client.get("/console/assets/..%2Fconsole.py")

    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/javascript")
    assert served.headers["cache-control"] == "public, max-age=86400"
    assert unknown.status_code == 404


async def test_the_work_counts_are_the_admin_api_s(
    client: httpx.AsyncClient, smtp: SMTPServer, app: FastAPI
) -> None:
    await sign_up(client, "ok@example.com")
    smtp.reply_to_data("550 5.1.1 no such mailbox")
    await sign_up(client, "gone@example.com")
    await insert_user(app, "owed@example.com")  # pending, due

    fragment = (await client.get("/console/tasks")).text
    api = (await client.get("/admin/tasks")).json()

    rows = re.findall(r'<tr data-kind="([a-z_]+)">(.*?)</tr>', fragment, re.S)
    shown = {kind: cells(row, "status") for kind, row in rows}
    assert list(shown) == [kind["kind"] for kind in api["kinds"]]
    for kind in api["kinds"]:
        expected = {status: str(count) for status, count in kind["counts"].items()}
        assert shown[kind["kind"]] == {**expected, "due": str(kind["due"])}
    assert shown["welcome_email"]["failed"] == "1"
    assert shown["welcome_email"]["due"] == "1"
    assert_no_inline_code(fragment)


async def test_the_failed_list_is_newest_first_with_the_last_error_and_a_retry_of_the_api(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    smtp.reply_to_data("550 5.1.1 first", "550 5.1.1 second")
    first = await sign_up(client, "one@example.com")
    second = await sign_up(client, "two@example.com")

    fragment = (await client.get("/console/tasks/failed")).text

    rows = re.findall(r'<tr id="task-welcome_email-([0-9a-f-]+)"', fragment)
    assert rows == [second, first]
    assert "550 5.1.1 second" in fragment
    assert f'hx-post="/admin/tasks/welcome_email/{second}/retry"' in fragment
    assert f'data-then-get="/console/tasks/welcome_email/{second}"' in fragment


async def test_a_retried_task_s_row_is_watched_until_it_settles(
    client: httpx.AsyncClient, smtp: SMTPServer, app: FastAPI
) -> None:
    owed = await insert_user(app, "owed@example.com")
    smtp.reply_to_data("550 5.1.1 no such mailbox")
    failed = await sign_up(client, "gone@example.com")

    pending = (await client.get(f"/console/tasks/welcome_email/{owed}")).text
    settled = (await client.get(f"/console/tasks/welcome_email/{failed}")).text
    unknown = await client.get(f"/console/tasks/welcome_email/{uuid.uuid4()}")

    assert 'data-status="pending"' in pending
    assert f'hx-get="/console/tasks/welcome_email/{owed}"' in pending
    assert "hx-post" not in pending  # only a failed task can be retried
    assert 'data-status="failed"' in settled
    assert "hx-trigger" not in settled
    assert "hx-post" in settled
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


async def test_markup_in_a_name_a_file_name_or_an_error_is_shown_as_text(
    client: httpx.AsyncClient, smtp: SMTPServer
) -> None:
    smtp.reply_to_data(f"550 5.1.1 {HOSTILE}")
    user_id = await sign_up(client, "eve@example.com", HOSTILE)
    upload = await client.post(
        "/uploads", files={"file": (f"{HOSTILE}.csv", b"email,name\nx,y\n", "text/csv")}
    )

    fragments = [
        (await client.get(path)).text
        for path in (
            f"/console/people/{user_id}",
            "/console/tasks/failed",
            "/console/imports/uploads",
            f"/console/imports/uploads/{upload.json()['id']}",
        )
    ]

    for fragment in fragments:
        assert "&lt;img src=x onerror=alert(1)&gt;" in fragment
        assert "<img" not in fragment
        assert_no_inline_code(fragment)


async def test_people_are_found_by_id_or_by_an_exact_address_normalised(
    client: httpx.AsyncClient,
) -> None:
    user_id = await sign_up(client, "Ada@Example.com", "Ada Lovelace")

    by_id = await client.get("/console/people/search", params={"query": f" {user_id} "})
    by_email = await client.get("/console/people/search", params={"query": "ADA@example.COM"})
    nobody = await client.get("/console/people/search", params={"query": "ada@example.co"})
    unknown_id = await client.get("/console/people/search", params={"query": str(uuid.uuid4())})
    neither = await client.get("/console/people/search", params={"query": "ada"})

    for found in (by_id, by_email):
        assert found.status_code == 200
        assert f'id="person-{user_id}"' in found.text
        assert "Ada Lovelace" in found.text
        assert 'id="welcome-status"' in found.text
        assert f'hx-post="/users/{user_id}/welcome-email/resend"' in found.text
        assert f'hx-get="/console/people/{user_id}/notifications"' in found.text
    assert 'id="person-none"' in nobody.text
    assert unknown_id.status_code == 404
    assert neither.status_code == 422
    assert "neither a user id nor a valid email address" in neither.json()["detail"]


async def test_a_person_s_notifications_show_with_their_statuses(
    client: httpx.AsyncClient,
) -> None:
    user_id = await sign_up(client, "ada@example.com")
    sent = await client.post(
        f"/users/{user_id}/notifications",
        json={"channel": "email", "subject": "Your <b>export</b>", "body": "Ready."},
    )

    fragment = (await client.get(f"/console/people/{user_id}/notifications")).text

    assert f'id="notification-{sent.json()["id"]}"' in fragment
    assert "Your &lt;b&gt;export&lt;/b&gt;" in fragment
    assert ">succeeded<" in fragment
    assert ">email<" in fragment


async def test_a_person_s_notifications_page_back_in_time_and_return_to_the_newest(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "PAGE_SIZE", 2)
    user_id = await sign_up(client, "ada@example.com")
    for n in range(3):
        sent = await client.post(
            f"/users/{user_id}/notifications",
            json={"channel": "email", "subject": f"Note {n}", "body": "Ready."},
        )
        assert sent.status_code == 202

    first = (await client.get(f"/console/people/{user_id}/notifications")).text
    [older] = re.findall(r'id="notifications-older" hx-get="([^"]+)"', first)
    second = (await client.get(unescape(older))).text
    [newest] = re.findall(r'id="notifications-newest" hx-get="([^"]+)"', second)

    assert re.findall(r"<td>(Note \d)</td>", first + second) == ["Note 2", "Note 1", "Note 0"]
    assert 'id="notifications-newest"' not in first
    assert 'id="notifications-older"' not in second
    assert unescape(newest) == f"/console/people/{user_id}/notifications"


async def test_a_welcome_email_in_flight_is_watched_and_a_settled_one_is_not(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owed = await insert_user(app, "owed@example.com")
    sent = await sign_up(client, "ada@example.com")

    pending = (await client.get(f"/console/people/{owed}")).text
    settled = (await client.get(f"/console/people/{sent}")).text

    assert f'hx-get="/console/people/{owed}" hx-trigger="every' in pending
    assert f'hx-get="/console/people/{sent}" hx-trigger' not in settled


async def test_the_audit_trail_is_filtered_and_paged_like_the_api_s(
    client: httpx.AsyncClient,
) -> None:
    for n in range(console.PAGE_SIZE + 2):
        await sign_up(client, f"p{n}@example.com")
    api = (await client.get("/admin/audit", params={"action": "user.signed_up"})).json()

    first = (await client.get("/console/audit/entries", params={"action": "user.signed_up"})).text
    [older] = re.findall(r'id="audit-older" hx-get="([^"]+)"', first)
    second = (await client.get(unescape(older))).text
    none = await client.get(
        "/console/audit/entries",
        params={"action": "user.signed_up", "since": "2999-01-01T00:00", "until": ""},
    )
    bad = await client.get("/console/audit/entries", params={"since": "yesterday"})

    resources = re.findall(r'data-field="resource"><code>([^<]+)<', first + second)
    assert resources[: console.PAGE_SIZE] == [item["resource"] for item in api["items"][:20]]
    assert len(resources) == console.PAGE_SIZE + 2
    assert len(set(resources)) == console.PAGE_SIZE + 2
    assert "action=user.signed_up" in unescape(older)
    assert 'id="audit-newest"' in second
    assert 'id="audit-none"' in none.text
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["query", "since"]


async def test_a_naive_moment_from_the_form_is_read_as_utc(client: httpx.AsyncClient) -> None:
    await sign_up(client, "ada@example.com")
    [entry] = (await client.get("/admin/audit", params={"action": "user.signed_up"})).json()[
        "items"
    ]
    at = entry["occurred_at"][:19]  # 2026-11-22T10:00:00, without the offset

    until_then = await client.get("/console/audit/entries", params={"until": at})
    from_then = await client.get("/console/audit/entries", params={"since": at})

    assert "user.signed_up" not in until_then.text
    assert "user.signed_up" in from_then.text


def upload_of(**fields: Any) -> UploadSummary:
    return examples.UPLOAD_ACCEPTED.model_copy(update=fields)


@pytest.mark.parametrize(
    ("fields", "percent", "live"),
    [
        ({"status": "pending", "bytes_read": 0, "size_bytes": 1000}, 0, True),
        ({"status": "running", "bytes_read": 400, "size_bytes": 1000}, 40, True),
        ({"status": "succeeded", "bytes_read": 998, "size_bytes": 1000}, 100, False),
        ({"status": "failed", "bytes_read": 500, "size_bytes": 1000}, 50, False),
    ],
)
def test_an_import_s_progress_is_the_share_of_its_file_read(
    fields: dict[str, Any], percent: int, live: bool
) -> None:
    view = console.upload_view(upload_of(**fields))

    assert (view.percent, view.live) == (percent, live)


async def test_the_uploads_show_newest_first_with_their_counts_and_errors_csv(
    client: httpx.AsyncClient,
) -> None:
    ids = []
    for n in range(2):
        body = f"email,name\nu{n}@example.com,U\nbad,Eve\n".encode()
        response = await client.post("/uploads", files={"file": (f"f{n}.csv", body, "text/csv")})
        ids.append(response.json()["id"])

    fragment = (await client.get("/console/imports/uploads")).text
    one = (await client.get(f"/console/imports/uploads/{ids[0]}")).text

    assert re.findall(r'<tr id="upload-([0-9a-f-]+)"', fragment) == ids[::-1]
    assert f'href="/uploads/{ids[0]}/errors.csv"' in fragment
    assert cells(one, "count") == {"imported": "1", "duplicate": "0", "rejected": "1"}
    assert 'value="100"' in one
    assert "hx-trigger" not in one  # settled: no longer watched
    assert 'hx-trigger="every' in fragment  # the list itself keeps refreshing


def test_an_estimated_succeeded_count_is_marked_as_one() -> None:
    counts = dict.fromkeys(TaskStatus, 0) | {TaskStatus.SUCCEEDED: 1_200_000}
    kinds = [
        TaskKindSummary(
            kind=kind,
            counts=counts,
            succeeded_is_estimate=estimate,
            due=0,
            oldest_due_age_seconds=None,
        )
        for kind, estimate in (("welcome_email", True), ("csv_import", False))
    ]
    fragment = console._templates.get_template("console/work_counts.html").render(
        kinds=kinds,
        statuses=list(TaskStatus),
        ages=dict.fromkeys(("welcome_email", "csv_import"), "-"),
        read_at=utcnow(),
    )

    rows = dict(re.findall(r'<tr data-kind="([a-z_]+)">(.*?)</tr>', fragment, re.S))
    assert cells(rows["welcome_email"], "status")["succeeded"] == "~1200000"
    assert "data-estimate" in rows["welcome_email"]
    assert cells(rows["csv_import"], "status")["succeeded"] == "1200000"
    assert "data-estimate" not in rows["csv_import"]
