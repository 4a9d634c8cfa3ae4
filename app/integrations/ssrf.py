"""The SSRF guard: webhooks reach public addresses only, checked when a URL is set and on connect.

A webhook URL is chosen by whoever calls the API, and the service then makes
requests to it from inside the network: without a guard, anyone could make it
call 127.0.0.1, the database, or the cloud metadata service at 169.254.169.254.

- `check_url` runs when a URL is set (the API answers 422): http or https, no
  credentials, and a host whose every address is public.
- `GuardedBackend` is the webhook client's network backend: on every new
  connection it resolves the host itself, refuses if any address is not public,
  and connects to an address it vetted. The check and the connection use one
  and the same DNS answer, so a name that resolved to a public address when it
  was set and to 127.0.0.1 now (DNS rebinding) is refused at delivery. TLS still
  verifies the URL's hostname: httpcore passes it as `server_hostname`, whatever
  address the socket was connected to.

`WEBHOOK_ALLOW_PRIVATE_TARGETS=true` lifts the address rule (scheme and
credentials are always checked), for development and tests against a local receiver.
"""

import asyncio
import ipaddress
import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES = frozenset({"http", "https"})
# Prefixes that embed an IPv4 address a gateway would forward to: NAT64, well
# known and local-use. (IPv4-mapped, 6to4 and Teredo are refused by their own rule.)
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class UnsafeWebhookUrl(ValueError):
    """The URL or an address its host resolves to is not one webhooks may reach."""


def check_shape(url: str) -> httpx.URL:
    """The parsed URL, if it is http(s) with a host and no credentials; the part needing no DNS."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeWebhookUrl(f"not a valid URL: {exc}") from None
    if parsed.scheme not in _SCHEMES:
        raise UnsafeWebhookUrl(f"the scheme must be http or https, not {parsed.scheme or 'none'!r}")
    if parsed.userinfo:
        raise UnsafeWebhookUrl("credentials in the URL are not allowed")
    try:
        # Reading the host decodes an IDNA name ("xn--..."), which may not be one.
        host = parsed.host
    except UnicodeError:  # idna.IDNAError
        raise UnsafeWebhookUrl("the host is not a valid internationalised domain name") from None
    if not host:
        raise UnsafeWebhookUrl("the URL has no host")
    if parsed.port == 0:
        raise UnsafeWebhookUrl("port 0 is not a port a webhook can be sent to")
    return parsed


def forbidden_reason(address: IPAddress) -> str | None:
    """Why webhooks may not reach this address, or None if it is a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if address.sixtofour is not None or address.teredo is not None:
            return "an IPv6 tunnel address embedding an IPv4 address"
        if any(address in network for network in _NAT64):
            return "a NAT64 address"
        if address.is_site_local:
            return "a site-local address"
    # Checked in this order so that the reason names the most specific class.
    checks = (
        ("an unspecified address", address.is_unspecified),
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),
        ("a reserved address", address.is_reserved),
        ("a private address", address.is_private),
        ("not a globally reachable address", not address.is_global),
    )
    return next((reason for reason, applies in checks if applies), None)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order (IP literals as they are)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        # Strip an IPv6 zone ("fe80::1%eth0"): the address class is what matters.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def vetted_addresses(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """The addresses to connect to; raises UnsafeWebhookUrl if any of them is forbidden.

    One forbidden address refuses the whole name: a name that answers with both
    a public and a private address is not one to trust with either.
    """
    try:
        addresses = await resolve(host, port)
    except OSError as exc:  # socket.gaierror
        raise UnsafeWebhookUrl(f"{host} does not resolve ({exc.strerror or exc})") from None
    except UnicodeError:  # a label over 63 characters, refused before any lookup
        raise UnsafeWebhookUrl(f"{host} is not a valid host name") from None
    if not addresses:
        raise UnsafeWebhookUrl(f"{host} does not resolve")
    if not allow_private:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason is not None:
                where = f"{host} resolves to {address}," if host != str(address) else f"{host} is"
                raise UnsafeWebhookUrl(f"{where} {reason}")
    return addresses


async def check_url(url: str, *, allow_private: bool, resolve_within: float) -> str:
    """The URL in normal form if webhooks may be sent to it; raises UnsafeWebhookUrl if not."""
    parsed = check_shape(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    # The host as it goes on the wire (IDNA-encoded), as httpcore will resolve it.
    host = parsed.raw_host.decode("ascii")
    try:
        async with asyncio.timeout(resolve_within):
            await vetted_addresses(host, port, allow_private=allow_private)
    except TimeoutError:
        message = f"{host} did not resolve within {resolve_within:g}s"
        raise UnsafeWebhookUrl(message) from None
    return str(parsed)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to vetted addresses: the connection-time half of the guard."""

    def __init__(
        self, *, allow_private: bool, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._allow_private = allow_private
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await vetted_addresses(host, port, allow_private=self._allow_private)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                # The vetted address, never the name again: a second lookup here
                # could answer differently.
                stream = await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
                return _QuicklyPolledStream(stream)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # noqa: S101 - vetted_addresses returns at least one
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeWebhookUrl("webhooks are never sent to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _QuicklyPolledStream(httpcore.AsyncNetworkStream):
    """A connection as httpcore's backend made it, with one question answered directly.

    On every request, httpcore's pool asks each idle connection whether its
    socket is readable (a server that closed it), and anyio answers by
    building a table of all the socket's attributes to look the socket up:
    about a fifth of a webhook delivery's CPU with 16 connections. The socket does
    not change, so it is looked up once, here, and polled as httpcore polls it.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _QuicklyPolledStream(tls)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read would return at once (data, or the b"" of a closed connection); a
    socket that is gone counts as readable, as httpcore counts it."""
    descriptor = -1 if sock is None else sock.fileno()
    if descriptor < 0:
        return True
    poller = select.poll()
    poller.register(descriptor, select.POLLIN)
    return bool(poller.poll(0))


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport and connection pool, with GuardedBackend opening the connections.

    httpx (0.28) has no public parameter for the network backend, so the pool is
    built here exactly as httpx builds it, plus that backend. A test delivers to
    a refused address through this transport, so an httpx change that bypassed
    the pool would fail the suite rather than open the hole silently.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        allow_private: bool,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(verify=verify, limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_private=allow_private),
        )
