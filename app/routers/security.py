"""Who may call a route, declared where the route is: `requires(Scope.X)` or `PUBLIC`.

One mechanism: an API key sent as `Authorization: Bearer <key>`, with scopes.
A route that declares neither is refused by a test that walks the route
table, so a new route is closed until someone decides who may call it.
"""

import ipaddress
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.params import Depends as DependsParam
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase

from app.core.config import Settings
from app.core.errors import ServiceError
from app.core.rate_limits import RateLimited, RequestLimiter
from app.services.api_keys import Caller, KeyResolver, Scope

API_KEY_SCHEME = "ApiKey"

_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "`Bearer`, with `error` and `scope` (RFC 6750) when a key was sent.",
        "schema": {"type": "string"},
    }
}


class Unauthorized(ServiceError):
    """No API key, or one that is unknown or revoked."""

    status = 401
    slug = "unauthorized"
    title = "Missing, unknown or revoked API key"
    documented_headers = _WWW_AUTHENTICATE

    def __init__(self, detail: str, *, key_sent: bool) -> None:
        super().__init__(detail)
        # RFC 6750: a request without credentials gets the bare challenge; a bad
        # key is named as such, so a client knows not to retry it.
        self.challenge = 'Bearer error="invalid_token"' if key_sent else "Bearer"

    def response_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge}


class Forbidden(ServiceError):
    """A valid key without the scope this route needs."""

    status = 403
    slug = "insufficient-scope"
    title = "The API key lacks the scope this route needs"
    documented_headers = _WWW_AUTHENTICATE

    def __init__(self, detail: str, *, scope: str) -> None:
        super().__init__(detail)
        self.scope = scope

    def response_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{self.scope}"'}


# What any route that checks a key may answer; every such router documents them.
AUTH_ERRORS: tuple[type[ServiceError], ...] = (Unauthorized, Forbidden, RateLimited)


# The key cache and the rate counter live on app.state (one per process), read
# here directly rather than as dependencies of their own: this runs on every
# request, and each dependency FastAPI resolves costs time.


async def _caller(request: Request, key: str) -> Caller:
    resolver: KeyResolver = request.app.state.key_resolver
    caller = await resolver.resolve(key)
    if caller is None:
        raise Unauthorized("unknown API key", key_sent=True)
    if caller.revoked:
        raise Unauthorized("this API key has been revoked", key_sent=True)
    # Read by the audit trail: the actor of whatever this request records.
    request.state.caller = caller
    limiter: RequestLimiter = request.app.state.limiter
    settings: Settings = request.app.state.settings
    await limiter.hit(settings.api_key_rate, "api-key", str(caller.key_id), what="with this key")
    return caller


def check_scope(caller: Caller | None, scope: Scope) -> None:
    """401 without a key, 403 with a key that lacks `scope`."""
    if caller is None:
        raise Unauthorized("send an API key: Authorization: Bearer <key>", key_sent=False)
    if scope not in caller.scopes:
        held = ", ".join(sorted(caller.scopes)) or "none"
        raise Forbidden(
            f"this needs the {scope} scope; the key {caller.name!r} has: {held}", scope=scope
        )


class ApiKeyBearer(SecurityBase):
    """The API key: the security scheme OpenAPI (and Swagger's Authorize button) shows,
    and the check itself, in one dependency rather than FastAPI's HTTPBearer plus one."""

    def __init__(self, *, required: bool) -> None:
        self.model = HTTPBearerModel(
            bearerFormat="ssk_...",
            description="An API key: `python -m app api-keys create --name NAME --scope "
            "SCOPE`, or BOOTSTRAP_API_KEY. Each route's lock names the scope it needs.",
        )
        self.scheme_name = API_KEY_SCHEME
        self.required = required

    async def __call__(self, request: Request, security_scopes: SecurityScopes) -> Caller | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            if self.required:
                raise Unauthorized("send an API key: Authorization: Bearer <key>", key_sent=False)
            return None
        caller = await _caller(request, key)
        for scope in security_scopes.scopes:
            check_scope(caller, Scope(scope))
        return caller


# The caller of a route that `requires` a scope; 401, 403 or 429 otherwise.
authenticate = ApiKeyBearer(required=True)
# On a public route: the caller if a key was sent (a bad one is still 401), else None.
identify = ApiKeyBearer(required=False)


def requires(scope: Scope) -> DependsParam:
    """`dependencies=[requires(Scope.USERS_READ)]`: only keys holding `scope` may call."""
    dependency: DependsParam = Security(authenticate, scopes=[scope.value])
    return dependency


OptionalCallerDep = Annotated[Caller | None, Depends(identify)]


async def anyone() -> None:
    """Marks a route public on purpose; see PUBLIC."""


# `dependencies=[PUBLIC]`: anyone may call this route, and that was decided.
PUBLIC = Depends(anyone)


def client_identity(request: Request) -> str:
    """The address limits count against: the peer's, or the one a trusted proxy forwarded
    (see TRUSTED_PROXIES). An IPv6 client is its /64, the block one subscriber gets."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


async def limit_anonymous_signups(request: Request, caller: OptionalCallerDep) -> None:
    """SIGNUP_RATE_LIMIT per client address. A caller with a key is counted against its
    key's budget instead: a backend signing people up from one address is one known client."""
    if caller is None:
        limiter: RequestLimiter = request.app.state.limiter
        settings: Settings = request.app.state.settings
        await limiter.hit(
            settings.signup_rate, "signup", client_identity(request), what="from this address"
        )
