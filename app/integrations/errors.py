"""How an integration tells the task runner whether a failure is worth retrying."""


class DeliveryError(Exception):
    """A side effect did not happen; `transient` says whether trying again may help."""

    transient: bool = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientDeliveryError(DeliveryError):
    """Worth another attempt: timeouts, refused connections, SMTP 4xx, HTTP 408/429/5xx."""

    transient = True


class PermanentDeliveryError(DeliveryError):
    """Will fail the same way again: SMTP 5xx, other HTTP 4xx, invalid data."""

    transient = False
