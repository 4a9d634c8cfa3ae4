"""SQLAlchemy models; importing this package registers every table on the metadata."""

from app.models.api_key import ApiKey
from app.models.audit import AuditEntry
from app.models.base import Base, TaskStatus
from app.models.idempotency import IdempotencyKey
from app.models.notification import Channel, Notification
from app.models.recipient_quota import RecipientQuota
from app.models.upload import Upload, UploadRowError
from app.models.user import User

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "Channel",
    "IdempotencyKey",
    "Notification",
    "RecipientQuota",
    "TaskStatus",
    "Upload",
    "UploadRowError",
    "User",
]
