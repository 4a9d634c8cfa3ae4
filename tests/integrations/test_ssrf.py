"""The SSRF guard: which addresses webhooks may reach; connections go only to vetted ones."""

import ipaddress
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from app.integrations import ssrf, webhooks
from app.integrations.ssrf import UnsafeWebhookUrl, check_shape, check_url, forbidden_reason
from tests.support.postgres import free_port
from tests.support.webhooks import WebhookReceiver

PUBLIC = "93.184.215.14"  # never connected to: the tests below stop before connecting


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Answer lookups for these names from the table (and count them); others as usual."""
    real = ssrf.resolve
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[ssrf.IPAddress]:
        asked.append(host)
        if host in answers:
            return [ipaddress.ip_address(a) for a in answers[host]]
        return await real(host, port)

    monkeypatch.setattr(ssrf, "resolve", resolve)
    return asked


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - the address under test
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("::ffff:93.184.215.14", "IPv4-mapped"),
        ("2002:7f00:1::", "tunnel"),  # 6to4 wrapping 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "tunnel"),  # Teredo
        ("64:ff9b::7f00:1", "NAT64"),
        ("fec0::1", "site-local"),
        ("100.64.0.1", "not a globally reachable"),  # carrier-grade NAT
        ("192.0.2.1", "private"),  # documentation range
    ],
)
def test_non_public_addresses_are_refused_with_their_class(address: str, reason: str) -> None:
    found = forbidden_reason(ipaddress.ip_address(address))

    assert found is not None
    assert reason in found


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "scheme"),
        ("gopher://example.com:70/_x", "scheme"),
        ("ftp://example.com/", "scheme"),
        ("example.com/hook", "scheme"),
        ("https://user:pass@example.com/hook", "credentials"),
        ("https://user@example.com/hook", "credentials"),
        ("https:///hook", "host"),
        ("http://[::1/hook", "valid"),
    ],
)
def test_urls_of_the_wrong_shape_are_refused_without_a_lookup(url: str, reason: str) -> None:
    with pytest.raises(UnsafeWebhookUrl, match=reason):
        check_shape(url)


async def test_a_name_with_one_private_address_among_public_ones_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {"mixed.example.test": [PUBLIC, "10.0.0.1"]})

    with pytest.raises(UnsafeWebhookUrl, match=r"10\.0\.0\.1, a private address"):
        await check_url("https://mixed.example.test/hook", allow_private=False, resolve_within=1)


async def test_a_name_that_does_not_resolve_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_such_name(host: str, port: int) -> list[ssrf.IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(ssrf, "resolve", no_such_name)

    with pytest.raises(UnsafeWebhookUrl, match="does not resolve"):
        await check_url("https://nowhere.example.test/", allow_private=False, resolve_within=1)


async def test_a_public_name_is_accepted_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"hooks.example.test": [PUBLIC]})

    url = await check_url(
        "HTTPS://Hooks.Example.TEST/in?x=1", allow_private=False, resolve_within=1
    )

    assert url == "https://hooks.example.test/in?x=1"


async def test_the_client_refuses_to_connect_to_loopback_when_private_targets_are_off(
    receiver: WebhookReceiver,
) -> None:
    async with webhooks.open_client(Settings(_env_file=None)) as client:
        with pytest.raises(UnsafeWebhookUrl, match="loopback"):
            await client.post(receiver.url, content=b"{}")

    assert receiver.requests == []


async def test_the_client_connects_to_the_address_it_vetted_and_keeps_the_hostname(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1"]})
    settings = Settings(_env_file=None, webhook_allow_private_targets=True)

    async with webhooks.open_client(settings) as client:
        response = await client.post(
            receiver.url_for("/hook", host="hooks.example.test"), content=b"{}"
        )

    assert response.status_code == 200
    # One lookup, made by the guard: the connection used its answer, not a second one.
    assert asked == ["hooks.example.test"]
    [request] = receiver.requests
    assert request.headers["host"] == f"hooks.example.test:{receiver.port}"


async def test_dns_rebinding_to_loopback_is_refused_at_connect(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {"rebind.example.test": [PUBLIC]}
    fake_dns(monkeypatch, answers)
    url = receiver.url_for("/hook", host="rebind.example.test")
    assert await check_url(url, allow_private=False, resolve_within=1) == url

    answers["rebind.example.test"] = ["127.0.0.1"]  # the name now points inside
    async with webhooks.open_client(Settings(_env_file=None)) as client:
        with pytest.raises(UnsafeWebhookUrl, match=r"resolves to 127\.0\.0\.1, a loopback"):
            await client.post(url, content=b"{}")

    assert receiver.requests == []


async def test_the_client_ignores_proxy_settings_from_the_environment(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy would make the connection for us, past the guard. (This one listens nowhere:
    a client that used it would fail to connect.)"""
    proxy = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("ALL_PROXY", proxy)
    settings = Settings(_env_file=None, webhook_allow_private_targets=True)

    async with webhooks.open_client(settings) as client:
        response = await client.post(receiver.url, content=b"{}")

    assert response.status_code == 200
    assert len(receiver.requests) == 1


async def test_the_client_does_not_follow_redirects(receiver: WebhookReceiver) -> None:
    receiver.reply_with(307)
    settings = Settings(_env_file=None, webhook_allow_private_targets=True)

    async with webhooks.open_client(settings) as client:
        response = await client.post(receiver.url, content=b"{}")

    assert response.status_code == 307
    assert len(receiver.requests) == 1


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate for `name` and its key, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize(
    ("served_as", "verified"), [("hooks.example.test", True), ("evil.test", False)]
)
async def test_tls_verifies_the_urls_hostname_though_the_connection_is_to_a_vetted_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served_as: str, verified: bool
) -> None:
    cert, key = self_signed(tmp_path, served_as)
    fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1"]})
    trusted = ssl.create_default_context(cafile=str(cert))
    transport = ssrf.GuardedTransport(
        limits=httpx.Limits(max_connections=1), allow_private=True, verify=trusted
    )

    with WebhookReceiver(tls=(cert, key)) as receiver:
        async with httpx.AsyncClient(transport=transport) as client:
            url = receiver.url_for("/hook", host="hooks.example.test")
            if verified:
                response = await client.post(url, content=b"{}")
                assert response.status_code == 200
            else:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await client.post(url, content=b"{}")

    assert len(receiver.requests) == (1 if verified else 0)


async def test_an_over_long_label_is_refused_without_a_lookup() -> None:
    with pytest.raises(UnsafeWebhookUrl, match="not a valid host name"):
        await check_url(f"https://{'a' * 70}.example/", allow_private=False, resolve_within=1)
