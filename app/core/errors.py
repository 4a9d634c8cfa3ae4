"""Domain exceptions that carry their HTTP meaning, and the handlers that render them.

Every error leaves the service as RFC 9457 problem details
(`application/problem+json`), whatever raised it: a service rule, request
validation, an unknown route, or a bug.
"""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.core.db import is_database_unavailable
from app.core.security_headers import API_HEADERS, DEFAULT_HEADERS
from app.schemas.problem import FieldError, Problem

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ServiceError(Exception):
    """A failure the client can act on; subclasses say which HTTP status it means."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"
    headers: ClassVar[dict[str, str] | None] = None
    # The headers this error's responses carry, as OpenAPI header objects.
    documented_headers: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @classmethod
    def problem_type(cls) -> str:
        return f"/problems/{cls.slug}"

    def response_headers(self) -> dict[str, str] | None:
        return self.headers


class NotFound(ServiceError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class UserNotFound(NotFound):
    slug = "user-not-found"
    title = "User not found"


class EmailAlreadyRegistered(Conflict):
    slug = "email-already-registered"
    title = "Email already registered"


class WelcomeEmailInProgress(Conflict):
    slug = "welcome-email-in-progress"
    title = "Welcome email still in progress"


class NotificationNotFound(NotFound):
    slug = "notification-not-found"
    title = "Notification not found"


class WebhookUrlRefused(ServiceError):
    status = 422
    slug = "webhook-url-refused"
    title = "Webhook URL refused"


class WebhookNotConfigured(Conflict):
    """A valid request that needs a webhook URL the user does not have: a state conflict."""

    slug = "webhook-not-configured"
    title = "The user has no webhook URL"


class NotSendableByEmail(ServiceError):
    """What the mail would carry cannot be sent as it stands: no retry could change that."""

    status = 422
    slug = "not-sendable-by-email"
    title = "Cannot be sent by email"


class IdempotencyKeyReused(ServiceError):
    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency key reused with another request"


class IdempotencyKeyInProgress(Conflict):
    slug = "idempotency-key-in-progress"
    title = "A request with this idempotency key is still in progress"


class ServiceUnavailable(ServiceError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"


# --- Who may call what, and limits on abuse ------------------------------------

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


class RateLimited(ServiceError):
    """Too many requests from one address or key, or too much mail to one recipient."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"
    documented_headers = {  # noqa: RUF012 - read-only by convention
        "Retry-After": {
            "description": "Seconds until the limit lets this request through again.",
            "schema": {"type": "integer", "minimum": 1},
        }
    }

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


AUTH_ERRORS: tuple[type[ServiceError], ...] = (Unauthorized, Forbidden, RateLimited)


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


class TaskNotFound(NotFound):
    slug = "task-not-found"
    title = "Task not found"


class TaskNotFailed(Conflict):
    slug = "task-not-failed"
    title = "Only failed tasks can be retried"


class UploadNotFound(NotFound):
    slug = "upload-not-found"
    title = "Upload not found"


class UploadTooLarge(ServiceError):
    status = 413
    slug = "upload-too-large"
    title = "Upload too large"


class UnsupportedUpload(ServiceError):
    status = 415
    slug = "unsupported-upload"
    title = "Not a CSV file"


class EmptyUpload(ServiceError):
    status = 422
    slug = "empty-upload"
    title = "The uploaded file is empty"


class InvalidUpload(ServiceError):
    """A multipart body that is malformed, incomplete, or lacks the `file` field."""

    status = 422
    slug = "invalid-upload"
    title = "Invalid upload request"


class MalformedBody(ServiceError):
    """A body that cannot be read at all: JSON that is not UTF-8 (FastAPI raises that
    one), a broken or truncated multipart body."""

    status = 400
    slug = "malformed-body"
    title = "Malformed request body"


class RequestValidationFailed(ServiceError):
    """Documents the validation error in OpenAPI; FastAPI raises its own exception."""

    status = 422
    slug = "validation-error"
    title = "Request validation failed"


def problem_response(problem: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def render_problem(
    error: ServiceError, instance: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The problem details response for `error`, at the path `instance`."""
    problem = Problem(
        type=error.problem_type(),
        title=error.title,
        status=error.status,
        detail=error.detail,
        instance=instance,
    )
    return problem_response(problem, headers={**(error.headers or {}), **(headers or {})})


def problem_responses(
    *errors: type[ServiceError], validation: bool = True, body: bool = False
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route: its documented errors, validation failure, and
    (for routes that read a body) a body that cannot be parsed at all."""
    documented: list[type[ServiceError]] = [*errors]
    if validation:
        documented.append(RequestValidationFailed)
    if body:
        documented.append(MalformedBody)
    responses: dict[int | str, dict[str, Any]] = {}
    for error in documented:
        # FastAPI files a response `model` under application/json;
        # `use_problem_media_type` moves it where it belongs.
        entry = responses.setdefault(error.status, {"model": Problem, "description": error.title})
        if error.title not in entry["description"]:
            entry["description"] += f"; or {error.title.lower()}"
        if error.documented_headers:
            entry.setdefault("headers", {}).update(error.documented_headers)
    return responses


# Starlette types every handler as taking Exception; it calls each one only with
# the class it was registered for, hence the casts.


def use_problem_media_type(app: FastAPI) -> None:
    """Document every error response as application/problem+json, as it is sent."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            for methods in schema.get("paths", {}).values():
                for operation in methods.values():
                    for code, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if code[0] in "45" and "application/json" in content:
                            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _service_error(request: Request, raised: Exception) -> JSONResponse:
    exc = cast(ServiceError, raised)
    return problem_response(
        Problem(
            type=exc.problem_type(),
            title=exc.title,
            status=exc.status,
            detail=exc.detail,
            instance=request.url.path,
        ),
        headers=exc.response_headers(),
    )


async def _validation_error(request: Request, raised: Exception) -> JSONResponse:
    exc = cast(RequestValidationError, raised)
    errors = [
        FieldError(loc=list(error.get("loc", ())), msg=error["msg"], type=error["type"])
        for error in exc.errors()
    ]
    return problem_response(
        Problem(
            type=RequestValidationFailed.problem_type(),
            title=RequestValidationFailed.title,
            status=422,
            detail="; ".join(_describe(error) for error in errors[:5]),
            instance=request.url.path,
            errors=errors,
        )
    )


def _describe(error: FieldError) -> str:
    where = ".".join(str(part) for part in error.loc if part != "body") or "body"
    return f"{where}: {error.msg}"


async def _http_error(request: Request, raised: Exception) -> JSONResponse:
    exc = cast(StarletteHTTPException, raised)
    phrase = HTTPStatus(exc.status_code).phrase
    return problem_response(
        Problem(
            type="about:blank",
            title=phrase,
            status=exc.status_code,
            detail=exc.detail if exc.detail != phrase else None,
            instance=request.url.path,
        ),
        headers=exc.headers,
    )


# The methods `Allow` may list, in the order it lists them: reads first, then writes.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this request's path.

    Starlette's 405 names only the methods of the first route whose path
    matched, but a path served by several routes (GET, PATCH and DELETE
    /users/{id}) allows all of theirs. Each method is tried against the
    routes as a request would be, through Starlette's public `matches`.
    """
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


async def _method_not_allowed(request: Request, raised: Exception) -> JSONResponse:
    exc = cast(StarletteHTTPException, raised)
    allow = ", ".join(allowed_methods(request))
    return await _http_error(
        request, StarletteHTTPException(405, exc.detail, headers={"Allow": allow})
    )


async def _database_unavailable(request: Request, raised: Exception) -> JSONResponse:
    # A dropped or refused database connection is the server's trouble, but not a
    # bug: the pool has discarded the dead connections and a retry will likely work.
    # Any other database error is a bug, and answered as one.
    if not is_database_unavailable(raised):
        return await _unexpected_error(request, raised)
    logger.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, _briefly(raised)
    )
    return problem_response(
        Problem(
            type=ServiceUnavailable.problem_type(),
            title=ServiceUnavailable.title,
            status=503,
            detail="The database is unavailable; retry shortly.",
            instance=request.url.path,
        ),
        headers={"Retry-After": "1"},
    )


def _briefly(exc: BaseException) -> str:
    """The innermost error's type and first line: the driver's words, not the statement."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    first_line = str(root).partition("\n")[0]
    return f"{type(root).__name__}: {first_line[:200]}"


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        Problem(
            type="/problems/internal-error",
            title="Internal server error",
            status=500,
            detail="The error was logged; the request can be retried.",
            instance=request.url.path,
        ),
        # Sent from outside every middleware (Starlette's ServerErrorMiddleware), so
        # the security headers come with it here.
        headers={**API_HEADERS, **DEFAULT_HEADERS},
    )


def install_error_handlers(app: FastAPI) -> None:
    use_problem_media_type(app)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(405, _method_not_allowed)
    # Every database error a request can meet, and the network errors a driver raises
    # while connecting: 503 when the database is unavailable, 500 otherwise.
    for unavailable in (DBAPIError, PoolTimeoutError, OSError):
        app.add_exception_handler(unavailable, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
