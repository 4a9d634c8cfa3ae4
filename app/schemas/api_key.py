"""API keys as `python -m app api-keys list` shows them: never the key itself."""

from datetime import datetime

from pydantic import BaseModel


class ApiKeyRead(BaseModel):
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class IssuedApiKey(ApiKeyRead):
    """A key as issued: the one time the plain key exists outside its holder's hands."""

    key: str
