"""The service plus comparison endpoints that exist only for the benchmarks.

(b) `POST /bench/signups-inline`: the same signup, but the welcome email is sent
    before the response, the way the articles' first version does it.
(c) `POST /bench/insert-only`: validation and one INSERT, nothing else: the
    floor any signup endpoint stands on.

And the product's own route functions with the security check switched off
(bench.security compares them with the real routes):

`GET /bench/users-unchecked/{id}`: GET /users/{id} with no key check and no
    per-key limit.
`POST /bench/signups-unlimited`: POST /signups without the per-address limit.

`create_app_without_console`: the service without the console's routes.

`create_request_only_app`: the bench app whose requests queue their background
    work as always but never run it (bench.signups measures a request's own CPU
    with it; recovery must be off too, RECOVERY_INTERVAL_SECONDS=0).
"""

import uuid

from fastapi import BackgroundTasks, FastAPI, Response

from app.main import create_server_app
from app.models import User
from app.models.base import TaskStatus, utcnow
from app.routers import signups as signups_routes
from app.routers import users as users_routes
from app.routers.deps import AuditorDep, SessionDep, SettingsDep
from app.routers.security import PUBLIC
from app.schemas.user import UserCreate, UserRead, UserWithWebhookSecret
from app.services import signups
from app.tasks.runner import run_tasks
from app.tasks.welcome_email import WELCOME_EMAIL


def create_bench_app() -> FastAPI:
    app = create_server_app()

    @app.post("/bench/signups-inline", status_code=201, response_model=UserRead)
    async def signup_inline(
        payload: UserCreate,
        session: SessionDep,
        settings: SettingsDep,
        auditor: AuditorDep,
        response: Response,
    ) -> UserRead:
        created = await signups.create(session, payload=payload, settings=settings)
        # The request waits for a slot, then for SMTP (run_task would queue the row).
        await run_tasks(WELCOME_EMAIL, [created.id], retry_inline=True)
        auditor.record("user.signed_up", f"users/{created.id}")
        response.headers["Location"] = f"/users/{created.id}"
        return created

    @app.post("/bench/insert-only", status_code=201, response_model=UserRead)
    async def insert_only(payload: UserCreate, session: SessionDep, response: Response) -> UserRead:
        now = utcnow()
        async with session.begin():
            # Marked sent, so no recovery pass ever mails these rows.
            user = User(
                id=uuid.uuid4(),
                email=payload.email,
                name=payload.name,
                created_at=now,
                welcome_generation=1,
                welcome_status=TaskStatus.SUCCEEDED,
                welcome_attempts=1,
                welcome_next_attempt_at=None,
                welcome_succeeded_at=now,
            )
            session.add(user)
        response.headers["Location"] = f"/users/{user.id}"
        return UserRead.from_model(user)

    # The same endpoint functions as the product's routes; only the check is gone.
    app.add_api_route(
        "/bench/users-unchecked/{user_id}",
        users_routes.get_user,
        methods=["GET"],
        response_model=UserRead,
        dependencies=[PUBLIC],
    )
    app.add_api_route(
        "/bench/signups-unlimited",
        signups_routes.create_signup,
        methods=["POST"],
        status_code=201,
        response_model=UserWithWebhookSecret,
        dependencies=[PUBLIC],
    )
    return app


def create_app_without_console() -> FastAPI:
    """The service with the console's routes taken out (bench.console compares the two)."""
    app = create_server_app()
    app.router.routes = [
        route
        for route in app.router.routes
        if not getattr(route, "path", "").startswith("/console")
    ]
    return app


async def _not_run(self: BackgroundTasks) -> None:
    """Starlette calls this after the response is sent; the tasks stay queued."""


def create_request_only_app() -> FastAPI:
    """The bench app with every request's background work queued and never run.

    The request does all it does in the product (binds the work, builds the
    audit entry, sets Location); only running the tasks after the response is
    left out. Done in the one place FastAPI runs them, not by overriding the
    dependencies that queue them: an override makes FastAPI work out the
    route's dependencies again on every request, which the product never does.
    This process serves nothing else, so nothing else loses its tasks.
    """
    BackgroundTasks.__call__ = _not_run  # type: ignore[method-assign]
    return create_bench_app()
