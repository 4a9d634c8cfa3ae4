"""API keys: issue, list and revoke them, keep the bootstrap key, and tell who is calling.

A key is `ssk_` and 43 random base62 characters (about 256 bits). The prefix lets
secret scanners recognise a leaked key; the database keeps only its SHA-256
digest. Keys are found by that digest, never by comparing the key itself, so
no timing difference can reveal how much of a guess was right: a digest that
half-matches says nothing about the key behind it.
"""

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import string
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import SessionFactory
from app.core.errors import Conflict, NotFound, ServiceError
from app.models.api_key import ApiKey
from app.models.base import utcnow
from app.repositories import api_keys as api_keys_repo
from app.repositories import audit as audit_repo
from app.schemas.api_key import ApiKeyRead, IssuedApiKey
from app.schemas.audit import AuditEntryCreate

logger = logging.getLogger(__name__)


class ApiKeyNameRefused(ServiceError):
    status = 422
    slug = "api-key-name-refused"
    title = "API key name refused"


class ApiKeyNameTaken(Conflict):
    slug = "api-key-name-taken"
    title = "API key name taken"


class ApiKeyNotFound(NotFound):
    slug = "api-key-not-found"
    title = "API key not found"


class Scope(StrEnum):
    """What a key may do. A route needs exactly one of these, or is public."""

    USERS_READ = "users:read"
    USERS_WRITE = "users:write"  # change, delete, webhook URL and secret, resend the welcome
    NOTIFICATIONS_SEND = "notifications:send"
    UPLOADS_READ = "uploads:read"
    UPLOADS_WRITE = "uploads:write"
    ADMIN = "admin"  # tasks, retries, the audit trail
    METRICS = "metrics"  # and nothing else: what a Prometheus scraper holds


ALL_SCOPES = [scope.value for scope in Scope]
KEY_PREFIX = "ssk_"
_ALPHABET = string.ascii_letters + string.digits
_RANDOM_LENGTH = 43  # 62**43 > 2**256
_SHOWN_LENGTH = len(KEY_PREFIX) + 8
BOOTSTRAP_NAME = "bootstrap"
# Actors the audit trail already uses for requests and commands without a key.
RESERVED_NAMES = {"anonymous", BOOTSTRAP_NAME, "cli", "startup"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A key's last use is written at most this often.
LAST_USED_PRECISION = timedelta(minutes=1)
# How long a process trusts what it read about a key. Every process reads a
# revocation within this time, so it must stay well under a second.
CACHE_SECONDS = 0.5
_CACHE_ENTRIES = 10_000


def generate() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def shown_prefix(key: str) -> str:
    """What listings show of a key: `ssk_` and 8 characters, or a quarter of a key set by hand."""
    if key.startswith(KEY_PREFIX) and len(key) == len(KEY_PREFIX) + _RANDOM_LENGTH:
        return key[:_SHOWN_LENGTH]
    return key[: min(_SHOWN_LENGTH, len(key) // 4)]


def _read(row: ApiKey) -> ApiKeyRead:
    return ApiKeyRead.model_validate(row, from_attributes=True)


async def _audit(session: AsyncSession, actor: str, action: str, row: ApiKey) -> None:
    # Written in the key's own transaction: unlike a request's entry, this one
    # cannot be lost, because a key nobody knows was issued is a key nobody revokes.
    entry = AuditEntryCreate(
        id=uuid.uuid4(),
        occurred_at=utcnow(),
        actor=actor,
        action=action,
        resource=f"api-keys/{row.name}",
        request_id=None,
        client_address=None,
        details={"prefix": row.prefix, "scopes": row.scopes},
    )
    await audit_repo.add_many(await session.connection(), [entry])


async def create(
    session: AsyncSession, *, name: str, scopes: list[Scope], actor: str = "cli"
) -> IssuedApiKey:
    """Issue a key; the returned object is the only place the plain key ever exists."""
    if not _NAME.match(name):
        raise ApiKeyNameRefused(
            "a key name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    if name in RESERVED_NAMES:
        raise ApiKeyNameRefused(f"{name!r} is reserved; choose another name")
    key = generate()
    unique_scopes = [scope.value for scope in Scope if scope in scopes]
    async with session.begin():
        row = await api_keys_repo.insert(
            session,
            name=name,
            prefix=shown_prefix(key),
            key_hash=digest(key),
            scopes=unique_scopes,
            now=utcnow(),
        )
        if row is None:
            raise ApiKeyNameTaken(f"a key named {name!r} exists (or existed); choose another name")
        await _audit(session, actor, "api_key.created", row)
        issued = _read(row)
    return IssuedApiKey(**issued.model_dump(), key=key)


async def list_all(session: AsyncSession) -> list[ApiKeyRead]:
    async with session.begin():
        return [_read(row) for row in await api_keys_repo.list_all(session)]


async def revoke(
    session: AsyncSession, *, name: str, actor: str = "cli"
) -> tuple[ApiKeyRead, bool]:
    """Revoke the named key: (the key, whether this call revoked it). Revoking it again
    changes nothing, so a script may repeat it."""
    async with session.begin():
        # Connect first, so the time recorded is when the database acts, not when a
        # cold command line started connecting to it.
        await session.connection()
        row = await api_keys_repo.revoke(session, name, utcnow())
        if row is not None:
            await _audit(session, actor, "api_key.revoked", row)
            return _read(row), True
        existing = await api_keys_repo.get_by_name(session, name)
        if existing is None:
            raise ApiKeyNotFound(f"no key named {name!r}")
        return _read(existing), False


async def ensure_bootstrap(sessions: SessionFactory, *, key: SecretStr) -> None:
    """Store BOOTSTRAP_API_KEY (its digest), with every scope, under the name `bootstrap`.

    Safe for many processes starting at once. A changed value replaces the old
    key; a revoked one stays revoked, whatever the environment says.
    """
    plain = key.get_secret_value()
    prefix, key_hash = shown_prefix(plain), digest(plain)
    async with sessions() as session, session.begin():
        same_secret = await api_keys_repo.find_by_hash(session, key_hash)
        if same_secret is not None:
            if same_secret.revoked_at is not None:
                logger.warning(
                    "BOOTSTRAP_API_KEY (key %r) was revoked at %s and stays revoked; unset it",
                    same_secret.name,
                    same_secret.revoked_at.isoformat(),
                )
            return
        existing = await api_keys_repo.get_by_name(session, BOOTSTRAP_NAME)
        store = api_keys_repo.insert if existing is None else api_keys_repo.replace_key
        row = await store(
            session,
            name=BOOTSTRAP_NAME,
            prefix=prefix,
            key_hash=key_hash,
            scopes=ALL_SCOPES,
            now=utcnow(),
        )
        # None: another process starting at the same moment stored it first.
        if row is not None:
            await _audit(session, "startup", "api_key.created", row)
            logger.info("bootstrap API key stored (prefix %s)", row.prefix)


@dataclass(frozen=True)
class Caller:
    """Who a request's key belongs to, and what it may do."""

    key_id: uuid.UUID
    name: str
    scopes: frozenset[str]
    revoked: bool


class KeyResolver:
    """Finds the key a request presents, trusting what it read for CACHE_SECONDS.

    One process answers thousands of requests a second with a handful of keys;
    reading each key from the database at most twice a second keeps the check
    off the request's critical path, and a revocation reaches every process
    within CACHE_SECONDS. Concurrent requests for a key being read share the read.
    """

    def __init__(self, sessions: SessionFactory, *, ttl: float = CACHE_SECONDS) -> None:
        self._sessions = sessions
        self._ttl = ttl
        # Unknown keys are cached too (and the cache is bounded), so a client
        # repeating a bad key costs the database nothing more.
        self._cache: OrderedDict[str, tuple[float, Caller | None]] = OrderedDict()
        self._reading: dict[str, asyncio.Future[Caller | None]] = {}

    async def resolve(self, key: str) -> Caller | None:
        """The key's holder (revoked ones included, so the answer can say so); None: unknown."""
        key_digest = digest(key)
        cached = self._cache.get(key_digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        reading = self._reading.get(key_digest)
        if reading is None:
            reading = asyncio.ensure_future(self._read(key_digest))
            self._reading[key_digest] = reading
            reading.add_done_callback(lambda _: self._reading.pop(key_digest, None))
        # Shielded: one waiter giving up must not cancel the read the others wait for.
        return await asyncio.shield(reading)

    async def _read(self, key_digest: str) -> Caller | None:
        # The entry expires counting from before the read: whatever it says was
        # true at some moment in the last CACHE_SECONDS.
        expires = time.monotonic() + self._ttl
        now = utcnow()
        async with self._sessions() as session, session.begin():
            row = await api_keys_repo.find_by_hash(session, key_digest)
            caller = None
            if row is not None and hmac.compare_digest(row.key_hash, key_digest):
                revoked = row.revoked_at is not None
                caller = Caller(row.id, row.name, frozenset(row.scopes), revoked)
                stale = row.last_used_at is None or row.last_used_at < now - LAST_USED_PRECISION
                if stale and not revoked:
                    await api_keys_repo.mark_used(session, row.id, now, every=LAST_USED_PRECISION)
        self._cache[key_digest] = (expires, caller)
        self._cache.move_to_end(key_digest)
        while len(self._cache) > _CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return caller
