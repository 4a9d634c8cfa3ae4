"""API keys for tests: issued straight into the database, and clients that carry them."""

import contextlib
from collections.abc import AsyncIterator, Iterable

import httpx
from fastapi import FastAPI

from app.models.base import utcnow
from app.repositories import api_keys as api_keys_repo
from app.services import api_keys
from app.services.api_keys import ALL_SCOPES, Scope

# The key real server processes in tests start with (BOOTSTRAP_API_KEY: every scope).
SERVER_KEY = "ssk_TestServerBootstrapKey0123456789abcdefghijk"
# For servers under a load that is not about the limits: each limit switched off.
NO_RATE_LIMITS = {
    "SIGNUP_RATE_LIMIT": "0",
    "API_KEY_RATE_LIMIT": "0",
    "WELCOME_RESENDS_PER_DAY": "0",
    "NOTIFICATIONS_PER_USER_PER_HOUR": "0",
}
# ASGITransport's default client address.
TEST_CLIENT_ADDRESS = "127.0.0.1"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def issue_key(app: FastAPI, name: str, scopes: Iterable[Scope | str] = ALL_SCOPES) -> str:
    """A new key with `scopes`, stored as the service stores keys (digest only), without
    the audit entry the CLI writes, so tests of the audit trail see only their own."""
    key = api_keys.generate()
    async with app.state.database.request_sessions() as session, session.begin():
        row = await api_keys_repo.insert(
            session,
            name=name,
            prefix=api_keys.shown_prefix(key),
            key_hash=api_keys.digest(key),
            scopes=[str(scope) for scope in scopes],
            now=utcnow(),
        )
    assert row is not None, f"a key named {name!r} exists"
    return key


@contextlib.asynccontextmanager
async def api_client(
    app: FastAPI, key: str | None = None, *, address: str = TEST_CLIENT_ADDRESS
) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI, from `address`, sending `key` (or no key at all)."""
    # ASGITransport runs the background tasks before returning the response, so
    # in these tests the work a request scheduled has run when the call returns.
    # Tests of "the response does not wait" use a real server (tests/e2e).
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    headers = bearer(key) if key is not None else {}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        yield http
