"""SQLAlchemy models, each kind's task state declared beside its model; importing this package
registers every table on the metadata."""

from app.models.api_key import ApiKey
from app.models.audit import AuditEntry
from app.models.base import Base, TaskStatus
from app.models.idempotency import IdempotencyKey
from app.models.notification import NOTIFICATION_STATES, Channel, Notification
from app.models.recipient_quota import RecipientQuota
from app.models.task_state import TaskState
from app.models.upload import CSV_IMPORT_STATE, Upload, UploadChunk, UploadRowError
from app.models.user import WELCOME_EMAIL_STATE, User

# Every kind of must-complete work, by name, in the order the admin API lists them.
TASK_STATES: dict[str, TaskState] = {
    state.name: state
    for state in (WELCOME_EMAIL_STATE, CSV_IMPORT_STATE, *NOTIFICATION_STATES.values())
}

__all__ = [
    "CSV_IMPORT_STATE",
    "NOTIFICATION_STATES",
    "TASK_STATES",
    "WELCOME_EMAIL_STATE",
    "ApiKey",
    "AuditEntry",
    "Base",
    "Channel",
    "IdempotencyKey",
    "Notification",
    "RecipientQuota",
    "TaskState",
    "TaskStatus",
    "Upload",
    "UploadChunk",
    "UploadRowError",
    "User",
]
