"""Every request example in the schema works when sent as it is, as Swagger UI's Execute sends it.

Each example runs against a fresh database holding one user (with a webhook
endpoint on a local receiver), whose id fills `{user_id}`. The examples'
webhook URL is on example.com: it resolves here to a public address without
asking any DNS server (there is none), and nothing is ever sent to it.
"""

import ipaddress
from typing import Any

import httpx
import pytest

from app.integrations import ssrf
from app.main import create_app
from tests.support.notify import LOOPBACK_WEBHOOKS, sign_up_with_webhook
from tests.support.webhooks import WebhookReceiver

SPEC: dict[str, Any] = create_app().openapi()
EXAMPLE_HOST = "example.com"
PUBLIC = "93.184.215.14"  # what EXAMPLE_HOST resolves to in these tests; never connected to


def json_body(operation: dict[str, Any]) -> dict[str, Any] | None:
    content: dict[str, Any] = operation.get("requestBody", {}).get("content", {})
    return content.get("application/json")


def resolved(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in schema:
        return schema
    component: dict[str, Any] = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return component


def property_sample(schema: dict[str, Any]) -> dict[str, Any]:
    """The body a client composes from the properties' own examples (or an enum's first value)."""
    component = resolved(schema)
    sample = {}
    for name, prop in component["properties"].items():
        variants = [resolved(variant) for variant in [prop, *prop.get("anyOf", [])]]
        values = [
            value
            for variant in variants
            for value in [*variant.get("examples", []), *variant.get("enum", [])]
        ]
        if values:
            sample[name] = values[0]
        else:
            assert name not in component.get("required", []), f"{name} has no example"
    return sample


REQUESTS = [
    (method, path, name, value)
    for path, methods in SPEC["paths"].items()
    for method, operation in methods.items()
    if (media := json_body(operation)) is not None
    for name, value in [
        *((name, example["value"]) for name, example in media.get("examples", {}).items()),
        ("from its properties' examples", property_sample(media["schema"])),
    ]
]  # fmt: skip


def test_every_json_body_offers_named_examples() -> None:
    bodies = {(method, path) for method, path, name, _ in REQUESTS if name.startswith("from")}

    assert bodies == {
        ("post", "/signups"),
        ("patch", "/users/{user_id}"),
        ("post", "/users/{user_id}/notifications"),
    }
    named = {(method, path) for method, path, name, _ in REQUESTS if not name.startswith("from")}
    assert named == bodies


def test_no_parameter_offers_an_example_this_test_would_not_send() -> None:
    with_examples = [
        (path, parameter["name"])
        for path, methods in SPEC["paths"].items()
        for operation in methods.values()
        for parameter in operation.get("parameters", [])
        if "example" in parameter or "examples" in parameter or "examples" in parameter["schema"]
    ]

    assert with_examples == []


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(LOOPBACK_WEBHOOKS)


@pytest.fixture(autouse=True)
def example_host_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ssrf.resolve

    async def resolve(host: str, port: int) -> list[ssrf.IPAddress]:
        if host == EXAMPLE_HOST:
            return [ipaddress.ip_address(PUBLIC)]
        return await real(host, port)

    monkeypatch.setattr(ssrf, "resolve", resolve)


@pytest.mark.parametrize(
    ("method", "path", "name", "body"),
    REQUESTS,
    ids=[f"{method.upper()} {path} {name}" for method, path, name, _ in REQUESTS],
)
async def test_each_request_example_succeeds_as_sent(
    client: httpx.AsyncClient,
    receiver: WebhookReceiver,
    method: str,
    path: str,
    name: str,
    body: Any,
) -> None:
    user = await sign_up_with_webhook(client, receiver, email="existing@example.com")

    response = await client.request(method, path.format(user_id=user["id"]), json=body)

    assert response.is_success, response.text
    documented = SPEC["paths"][path][method]["responses"]
    assert str(response.status_code) in documented
