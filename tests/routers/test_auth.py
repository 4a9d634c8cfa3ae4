"""Who may call what: every route is public on purpose or needs one scope, and says so.

The route table is walked, not listed by hand: a new route that declares
neither PUBLIC nor `requires(...)` fails here, and so does one without an
example request below, so it is closed until someone decides who may call it.
"""

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.routers.security import API_KEY_SCHEME
from app.services import api_keys
from app.services.api_keys import ALL_SCOPES, Scope
from tests.conftest import ClientWith
from tests.support.keys import api_client, bearer, issue_key
from tests.support.notify import LOOPBACK_WEBHOOKS, sign_up, sign_up_with_webhook
from tests.support.routes import RouteAccess, api_routes, other_routes
from tests.support.server import PROJECT_ROOT
from tests.support.smtp import SMTPServer
from tests.support.waiting import eventually_async
from tests.support.webhooks import WebhookReceiver

PROBLEM = "application/problem+json"
APP = create_app()
ROUTES = api_routes(APP)
PUBLIC_ON_PURPOSE = {
    "POST /signups",
    *(f"{method} {probe}" for method in ("GET", "HEAD") for probe in ("/healthz", "/readyz")),
    # The docs describe the API; they hand out nothing.
    "GET /docs",
    "GET /redoc",
    "GET /docs/assets/{name}",
    # The console's pages are empty shells and its assets are code: its data comes from
    # the closed routes below them, with the key the operator types.
    "GET /console",
    "GET /console/imports",
    "GET /console/audit",
    "GET /console/people",
    "GET /console/assets/{name}",
}
SCHEMA = APP.openapi_url  # FastAPI's own route, not an API route
DOCS = ["/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js", SCHEMA]
CLOSED = [route for route in ROUTES if not route.public]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return LOOPBACK_WEBHOOKS


@dataclass
class Call:
    method: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)

    async def send(self, client: httpx.AsyncClient) -> httpx.Response:
        return await client.request(self.method, self.url, **self.options)


@dataclass
class World:
    """What an example request may need: a client that may do anything, and the fakes."""

    client: httpx.AsyncClient
    smtp: SMTPServer
    receiver: WebhookReceiver
    users: int = 0

    async def user(self) -> str:
        self.users += 1
        user_id: str = (await sign_up(self.client, f"user{self.users}@example.com"))["id"]
        return user_id

    async def notification(self) -> str:
        user_id = await self.user()
        response = await self.client.post(
            f"/users/{user_id}/notifications",
            json={"channel": "email", "subject": "Hi", "body": "There"},
        )
        notification_id: str = response.json()["id"]
        return notification_id

    async def upload(self) -> str:
        response = await self.client.post("/uploads", files={"file": CSV})
        upload_id: str = response.json()["id"]
        return upload_id


CSV = ("people.csv", b"email,name\nbob@example.com,Bob\nnot-an-email,Eve\n", "text/csv")
NOTE = {"channel": "email", "subject": "Your export is ready", "body": "Download it."}


async def failed_welcome(world: World) -> Call:
    world.smtp.reply_to_data("550 5.1.1 no such mailbox")
    user_id = await world.user()
    return Call("POST", f"/admin/tasks/welcome_email/{user_id}/retry")


async def failed_welcome_row(world: World) -> Call:
    retry = await failed_welcome(world)
    return Call("GET", retry.url.replace("/admin/tasks/", "/console/tasks/").removesuffix("/retry"))


async def rotate(world: World) -> Call:
    user = await sign_up_with_webhook(world.client, world.receiver)
    return Call("POST", f"/users/{user['id']}/webhook-secret/rotate")


Example = Callable[[World], Awaitable[Call]]

# One request per closed route that succeeds with the right key.
EXAMPLES: dict[str, Example] = {
    "GET /users": lambda w: _ready(Call("GET", "/users", {"params": {"email": "ada@example.com"}})),
    "GET /users/{user_id}": lambda w: _call(w.user(), "GET", "/users/{}"),
    "PATCH /users/{user_id}": lambda w: _call(
        w.user(), "PATCH", "/users/{}", json={"webhook_url": None}
    ),
    "DELETE /users/{user_id}": lambda w: _call(w.user(), "DELETE", "/users/{}"),
    "POST /users/{user_id}/webhook-secret/rotate": rotate,
    "POST /users/{user_id}/welcome-email/resend": lambda w: _call(
        w.user(), "POST", "/users/{}/welcome-email/resend"
    ),
    "POST /users/{user_id}/notifications": lambda w: _call(
        w.user(), "POST", "/users/{}/notifications", json=NOTE
    ),
    "GET /users/{user_id}/notifications": lambda w: _call(
        w.user(), "GET", "/users/{}/notifications"
    ),
    "GET /notifications/{notification_id}": lambda w: _call(
        w.notification(), "GET", "/notifications/{}"
    ),
    "POST /uploads": lambda w: _ready(Call("POST", "/uploads", {"files": {"file": CSV}})),
    "GET /uploads": lambda w: _ready(Call("GET", "/uploads")),
    "GET /uploads/{upload_id}": lambda w: _call(w.upload(), "GET", "/uploads/{}"),
    "GET /uploads/{upload_id}/errors.csv": lambda w: _call(
        w.upload(), "GET", "/uploads/{}/errors.csv"
    ),
    "GET /admin/tasks": lambda w: _ready(Call("GET", "/admin/tasks")),
    "GET /admin/tasks/failed": lambda w: _ready(Call("GET", "/admin/tasks/failed")),
    "POST /admin/tasks/{kind}/{task_id}/retry": failed_welcome,
    "GET /admin/audit": lambda w: _ready(Call("GET", "/admin/audit")),
    "GET /metrics": lambda w: _ready(Call("GET", "/metrics")),
    "GET /console/tasks": lambda w: _ready(Call("GET", "/console/tasks")),
    "GET /console/tasks/failed": lambda w: _ready(Call("GET", "/console/tasks/failed")),
    "GET /console/tasks/{kind}/{task_id}": failed_welcome_row,
    "GET /console/imports/uploads": lambda w: _ready(Call("GET", "/console/imports/uploads")),
    "GET /console/imports/uploads/{upload_id}": lambda w: _call(
        w.upload(), "GET", "/console/imports/uploads/{}"
    ),
    "GET /console/audit/entries": lambda w: _ready(Call("GET", "/console/audit/entries")),
    "GET /console/people/search": lambda w: _call(
        w.user(), "GET", "/console/people/search?query={}"
    ),
    "GET /console/people/{user_id}": lambda w: _call(w.user(), "GET", "/console/people/{}"),
    "GET /console/people/{user_id}/notifications": lambda w: _call(
        w.user(), "GET", "/console/people/{}/notifications"
    ),
}


async def _call(made: Awaitable[str], method: str, template: str, **options: Any) -> Call:
    return Call(method, template.format(await made), options)


async def _ready(call: Call) -> Call:
    return call


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_every_route_is_public_on_purpose_or_needs_exactly_one_scope(route: RouteAccess) -> None:
    if route.public:
        assert route.scopes == (), f"{route} is PUBLIC and yet requires {route.scopes}"
        assert str(route) in PUBLIC_ON_PURPOSE, f"{route} is PUBLIC: say why here, or close it"
    else:
        assert len(route.scopes) == 1, f"{route} declares neither PUBLIC nor one scope"
        assert route.scopes[0] in ALL_SCOPES


def test_only_signups_health_the_docs_and_the_console_s_shells_are_public() -> None:
    assert {str(route) for route in ROUTES if route.public} == PUBLIC_ON_PURPOSE
    assert other_routes(APP) == [SCHEMA]


def test_every_closed_route_has_an_example_request() -> None:
    assert {str(route) for route in CLOSED} == set(EXAMPLES)


@pytest.mark.parametrize("route", CLOSED, ids=str)
async def test_a_closed_route_answers_401_401_401_403_then_succeeds(
    route: RouteAccess,
    app: FastAPI,
    client: httpx.AsyncClient,
    smtp: SMTPServer,
    receiver: WebhookReceiver,
) -> None:
    """No key, an unknown key, a revoked key: 401. A key with every scope but this
    one: 403. A key with this scope alone: success."""
    [scope] = route.scopes
    call = await EXAMPLES[str(route)](World(client, smtp, receiver))
    revoked = await issue_key(app, "revoked")
    async with app.state.database.request_sessions() as session:
        await api_keys.revoke(session, name="revoked")
    others = [other for other in ALL_SCOPES if other != scope]
    keys = {
        "unknown": api_keys.generate(),
        "revoked": revoked,
        "without": await issue_key(app, "without", others),
        "with": await issue_key(app, "with", [scope]),
    }

    async with api_client(app) as anonymous:
        missing = await call.send(anonymous)
    answers = {}
    for name, key in keys.items():
        async with api_client(app, key) as http:
            answers[name] = await call.send(http)

    for response in (missing, answers["unknown"], answers["revoked"]):
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "/problems/unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert answers["unknown"].headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "revoked" in answers["revoked"].json()["detail"]
    forbidden = answers["without"]
    assert forbidden.status_code == 403, forbidden.text
    assert forbidden.headers["content-type"] == PROBLEM
    assert forbidden.json()["type"] == "/problems/insufficient-scope"
    assert forbidden.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="{scope}"'
    )
    assert answers["with"].is_success, answers["with"].text


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "ssk_abc", "Token abc"]
)
async def test_an_authorization_header_that_is_not_a_bearer_key_is_401(
    anonymous_client: httpx.AsyncClient, authorization: str
) -> None:
    response = await anonymous_client.get("/admin/tasks", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_bad_key_on_a_public_route_is_refused_not_ignored(
    anonymous_client: httpx.AsyncClient,
) -> None:
    response = await anonymous_client.post(
        "/signups",
        json={"email": "ada@example.com", "name": "Ada"},
        headers=bearer(api_keys.generate()),
    )

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_health_and_docs_answer_anyone(anonymous_client: httpx.AsyncClient) -> None:
    for path in ["/healthz", "/readyz", *DOCS]:
        response = await anonymous_client.get(str(path))
        assert response.status_code == 200, path


async def test_a_webhook_url_at_signup_needs_users_write_and_only_then_is_its_secret_shown(
    anonymous_client: httpx.AsyncClient, client_with: ClientWith, receiver: WebhookReceiver
) -> None:
    reader = await client_with(Scope.USERS_READ)
    writer = await client_with(Scope.USERS_WRITE)
    body = {"email": "ada@example.com", "name": "Ada", "webhook_url": receiver.url}

    anonymous = await anonymous_client.post("/signups", json=body)
    read_only = await reader.post("/signups", json=body)
    allowed = await writer.post("/signups", json=body)

    assert anonymous.status_code == 401
    assert read_only.status_code == 403
    assert read_only.json()["type"] == "/problems/insufficient-scope"
    assert allowed.status_code == 201
    assert allowed.json()["webhook_secret"].startswith("whsec_")


async def test_no_response_to_a_key_without_users_write_ever_holds_a_webhook_secret(
    app: FastAPI,
    client: httpx.AsyncClient,
    client_with: ClientWith,
    smtp: SMTPServer,
    receiver: WebhookReceiver,
) -> None:
    """Every route a key with every other scope may call, after secrets were issued."""
    user = await sign_up_with_webhook(client, receiver)
    rotated = (await client.post(f"/users/{user['id']}/webhook-secret/rotate")).json()
    secrets = [user["webhook_secret"], rotated["webhook_secret"]]
    everything_but = await client_with(*(Scope(s) for s in ALL_SCOPES if s != Scope.USERS_WRITE))
    world = World(client, smtp, receiver)

    seen = []
    for route in CLOSED:
        if route.scopes != (Scope.USERS_WRITE,):
            call = await EXAMPLES[str(route)](world)
            response = await call.send(everything_but)
            assert response.is_success, (str(route), response.text)
            seen.append(response.text)
    seen.append((await everything_but.get(f"/users/{user['id']}")).text)

    for text in seen:
        for secret in secrets:
            assert secret not in text


async def test_the_audit_actor_is_the_name_of_the_key(
    app: FastAPI, client: httpx.AsyncClient, client_with: ClientWith
) -> None:
    user_id = (await sign_up(client))["id"]
    crm = await client_with(Scope.USERS_WRITE, name="crm-sync")

    await crm.delete(f"/users/{user_id}")

    trail = (await client.get("/admin/audit", params={"action": "user.deleted"})).json()
    assert [entry["actor"] for entry in trail["items"]] == ["crm-sync"]


async def test_a_revoked_key_is_refused_within_a_second_in_a_process_that_just_used_it(
    app: FastAPI, client_with: ClientWith
) -> None:
    reader = await client_with(Scope.ADMIN, name="soon-revoked")
    assert (await reader.get("/admin/tasks")).status_code == 200  # now cached

    async with app.state.database.request_sessions() as session:
        await api_keys.revoke(session, name="soon-revoked")

    async def refused() -> bool:
        return (await reader.get("/admin/tasks")).status_code == 401

    await eventually_async(refused, timeout=1.0, what="the revoked key to be refused")


async def test_no_key_reaches_the_logs(
    app: FastAPI, caplog: pytest.LogCaptureFixture, client_with: ClientWith
) -> None:
    caplog.set_level(logging.DEBUG)
    good = await issue_key(app, "logged", [Scope.ADMIN])
    unknown = api_keys.generate()

    for key in (good, unknown, good + "x"):
        async with api_client(app, key) as http:
            await http.get("/admin/tasks")
            await http.get("/metrics")

    assert caplog.text
    for key in (good, unknown):
        assert key not in caplog.text


def test_openapi_declares_each_route_s_scope_and_documents_401_403_and_429() -> None:
    spec = APP.openapi()
    scheme = spec["components"]["securitySchemes"][API_KEY_SCHEME]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")

    for route in CLOSED:
        if route.path.startswith("/console/"):
            continue  # HTML for the console's pages, not part of the API it describes
        operation = spec["paths"][route.path][route.method.lower()]
        assert operation["security"] == [{API_KEY_SCHEME: list(route.scopes)}], str(route)
        for code in ("401", "403", "429"):
            response = operation["responses"][code]
            assert set(response["content"]) == {PROBLEM}, (str(route), code)
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
        assert "Retry-After" in operation["responses"]["429"]["headers"]
    signup = spec["paths"]["/signups"]["post"]
    assert {} in signup["security"]  # a key is optional there
    assert "429" in signup["responses"]
    for path in ("/healthz", "/readyz"):
        assert "security" not in spec["paths"][path]["get"]


def test_the_readme_s_security_table_lists_every_route_with_its_scope() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Security model\n") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| (`[^|]+`) \| ([^|]+) \|$", section, re.M)
    closed = {
        route: scope.strip("`")
        for routes, scope in rows
        for route in re.findall(r"`([A-Z]+ [^`]+)`", routes)
        if re.fullmatch(r"`[a-z:]+`", scope.strip())
    }
    public = {
        route
        for routes, scope in rows
        for route in re.findall(r"`([A-Z]+ [^`]+)`", routes)
        if scope.startswith("public")
    }

    assert closed == {str(route): route.scopes[0] for route in CLOSED}
    assert public == PUBLIC_ON_PURPOSE | {f"GET {SCHEMA}"}
