"""SQL for users and their welcome-email state."""

import uuid
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Row, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.base import TaskStatus
from app.models.user import WELCOME_EMAIL_STATE, User
from app.repositories.dialect import upsert_insert


def welcome_owed(now: datetime) -> dict[str, Any]:
    """A new user's welcome state: the first message owed, due now."""
    return {"welcome_generation": 1, **WELCOME_EMAIL_STATE.owed(now)}


def no_welcome() -> dict[str, Any]:
    """A new user's welcome state when none is owed (imported with send_welcome=false)."""
    return {"welcome_generation": 0, **WELCOME_EMAIL_STATE.not_owed()}


async def insert(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    now: datetime,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> User | None:
    """Insert a user owing a welcome email; None if the email is taken.

    ON CONFLICT rather than check-then-insert: two simultaneous signups for one
    address cannot both pass a check, and the loser gets a clean answer instead
    of an integrity error. The user comes back built from the row sent, not read
    back from what the database returns: only whether the row went in is asked.
    """
    row = {
        "id": uuid.uuid4(),
        "email": email,
        "name": name,
        "created_at": now,
        "webhook_url": webhook_url,
        "webhook_secret": webhook_secret,
        **welcome_owed(now),
    }
    statement = _insert_statement(session.get_bind().dialect.name)
    inserted = (await session.execute(statement, row)).first()
    return User(**row) if inserted is not None else None


@cache
def _insert_statement(dialect: str) -> Any:
    """Built once, on the table rather than the mapped class: the row comes as parameters,
    so no signup builds, keys or runs a statement through the ORM's insert machinery."""
    table = User.__table__
    return (
        upsert_insert(dialect, table)
        .on_conflict_do_nothing(index_elements=[table.c.email])
        .returning(table.c.id)
    )


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def recipient_for_share(
    session: AsyncSession, user_id: uuid.UUID
) -> Row[str, str | None] | None:
    """The user's email and webhook_url, or None if there is no such user; the row is
    locked against deletion.

    FOR SHARE on PostgreSQL: a notification inserted in this transaction cannot
    lose its user to a concurrent delete. (SQLite's writers are serialised anyway.)
    """
    statement = (
        select(User.email, User.webhook_url).where(User.id == user_id).with_for_update(read=True)
    )
    return (await session.execute(statement)).one_or_none()


async def set_webhook(
    session: AsyncSession, user_id: uuid.UUID, *, url: str | None, secret: str | None
) -> User | None:
    """Point the user's webhooks at `url` with a new secret; None if not found or unchanged.

    A new endpoint starts with its own secret alone: a previous one is dropped.
    """
    statement = (
        update(User)
        .where(User.id == user_id, User.webhook_url.is_distinct_from(url))
        .values(
            webhook_url=url,
            webhook_secret=secret,
            webhook_previous_secret=None,
            webhook_previous_secret_expires_at=None,
        )
        .returning(User)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalars(statement)).one_or_none()


async def rotate_webhook_secret(
    session: AsyncSession, user_id: uuid.UUID, secret: str, previous_until: datetime | None
) -> User | None:
    """Replace the signing secret, keeping the one it replaces until `previous_until` (None:
    not at all); None if the user is not found or has no webhook URL.

    One statement: SET reads the row as it was, so the current secret becomes the
    previous one in the same write that replaces it.
    """
    statement = (
        update(User)
        .where(User.id == user_id, User.webhook_url.is_not(None))
        .values(
            webhook_secret=secret,
            webhook_previous_secret=User.webhook_secret if previous_until else None,
            webhook_previous_secret_expires_at=previous_until,
        )
        .returning(User)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalars(statement)).one_or_none()


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this normalised address (the unique index on email finds it)."""
    return await session.scalar(select(User).where(User.email == email))


async def exists(session: AsyncSession, user_id: uuid.UUID) -> bool:
    found = await session.scalar(select(User.id).where(User.id == user_id))
    return found is not None


async def delete_by_id(session: AsyncSession, user_id: uuid.UUID) -> bool:
    result = await session.execute(delete(User).where(User.id == user_id).returning(User.id))
    return result.first() is not None


async def rearm_welcome(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> User | None:
    """Owe the user a new welcome email if the last one settled, or none was owed; else None.

    A new generation gives the new message its own Message-ID, so a receiver
    deduplicating by Message-ID still shows the resend.
    """
    state = WELCOME_EMAIL_STATE
    statement = (
        update(User)
        .where(
            User.id == user_id,
            or_(
                state.status.in_([TaskStatus.SUCCEEDED, TaskStatus.FAILED]),
                state.status.is_(None),
            ),
        )
        .values(welcome_generation=User.welcome_generation + 1, **state.rearmed(now))
        .returning(User)
        .execution_options(synchronize_session=False)
    )
    return (await session.scalars(statement)).one_or_none()
