"""Webhook endpoints: vet a URL before it is stored, and issue signing secrets."""

from app.core.config import Settings
from app.core.errors import Conflict, ServiceError
from app.integrations import ssrf


class WebhookUrlRefused(ServiceError):
    status = 422
    slug = "webhook-url-refused"
    title = "Webhook URL refused"


class WebhookNotConfigured(Conflict):
    """A valid request that needs a webhook URL the user does not have: a state conflict."""

    slug = "webhook-not-configured"
    title = "The user has no webhook URL"


# A URL is vetted inside a request; a resolver that hangs must not hang the request.
_RESOLVE_WITHIN_SECONDS = 5.0


async def vet_url(url: str, settings: Settings) -> str:
    """The URL in normal form, if the SSRF guard lets webhooks reach it; 422 otherwise.

    Runs before any transaction opens: a slow DNS answer holds no connection.
    """
    try:
        return await ssrf.check_url(
            url,
            allow_private=settings.webhook_allow_private_targets,
            resolve_within=min(_RESOLVE_WITHIN_SECONDS, settings.webhook_timeout_seconds),
        )
    except ssrf.UnsafeWebhookUrl as exc:
        raise WebhookUrlRefused(f"webhook_url refused: {exc}") from None
