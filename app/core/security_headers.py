"""Security headers on every response: what an API should send, and what the pages need.

An API's responses are data, never pages: a browser must not sniff them into
HTML or script, frame them, load anything they name, leak the URL onward, or
keep a copy (OWASP's REST Security cheat sheet). Swagger UI and ReDoc are
pages, with their scripts and styles served by the service and an inline script
each; for those, the policy allows this origin and the hashes of the inline
scripts in the page being sent, so the docs work and nothing else runs on them.
The console's pages have no inline script or style at all, so theirs is stricter.
"""

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Set only where a route has not chosen its own.
DEFAULT_HEADERS = {"Cache-Control": "no-store"}
# Sent over HTTPS only: over plain HTTP browsers ignore it, and it must not pin a
# host that is not served over TLS.
_HSTS = ("Strict-Transport-Security", "max-age=31536000")

_DOCS_POLICY = (
    "default-src 'none'; "
    # Swagger UI and ReDoc are served by the service itself (app.routers.docs).
    "script-src 'self' {hashes}; "
    # ReDoc and Swagger UI inject their own style elements.
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "connect-src 'self'; "
    "worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# The operator console's pages (app.routers.console): its own scripts and styles, and
# requests to this origin; no inline script or style, no eval, no form posted anywhere
# (htmx sends them), nothing from elsewhere.
CONSOLE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def docs_policy(html: bytes) -> str:
    """The Content-Security-Policy for a docs page: this origin, and its own inline scripts."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return _DOCS_POLICY.format(hashes=hashes)


class SecurityHeadersMiddleware:
    """Adds the headers to every response the app sends. Plain ASGI: nothing is buffered,
    except a docs page, whose policy depends on its body (a few kilobytes)."""

    def __init__(
        self, app: ASGIApp, *, docs_paths: Iterable[str], console_paths: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.docs_paths = frozenset(docs_paths)
        self.console_paths = frozenset(console_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if path in self.docs_paths:
            await self.app(scope, receive, _DocsPage(send, https))
            return

        headers = (
            {**API_HEADERS, "Content-Security-Policy": CONSOLE_POLICY}
            if path in self.console_paths
            else API_HEADERS
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add(MutableHeaders(scope=message), headers, https)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _add(headers: MutableHeaders, values: dict[str, str], https: bool) -> None:
    for name, value in values.items():
        headers[name] = value
    for name, value in DEFAULT_HEADERS.items():
        headers.setdefault(name, value)
    if https:
        headers[_HSTS[0]] = _HSTS[1]


class _DocsPage:
    """A `send` that holds a docs page back until its body is complete, then sends it
    with a policy that allows its own inline scripts."""

    def __init__(self, send: Send, https: bool) -> None:
        self._send = send
        self._https = https
        self._start: Message | None = None
        self._body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._start = message
            return
        if message["type"] != "http.response.body" or self._start is None:
            await self._send(message)
            return
        self._body += message.get("body", b"")
        if message.get("more_body", False):
            return
        policy = docs_policy(bytes(self._body))
        _add(
            MutableHeaders(scope=self._start),
            {**API_HEADERS, "Content-Security-Policy": policy},
            self._https,
        )
        await self._send(self._start)
        await self._send({"type": "http.response.body", "body": bytes(self._body)})
