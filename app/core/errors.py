"""How errors leave the service: as RFC 9457 problem details, whatever raised them.

The mechanism lives here: ServiceError (a failure the client can act on,
carrying its HTTP status), the few errors every layer shares, the handlers
and the OpenAPI documentation of errors. Each domain error lives beside the
service that raises it (UserNotFound in app.services.users, and so on).
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

from app.core.db import DatabaseUnreachable, describe, is_database_unavailable
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


class ServiceUnavailable(ServiceError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"


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
    return problem_response(
        problem, headers={**(error.response_headers() or {}), **(headers or {})}
    )


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
    return render_problem(cast(ServiceError, raised), request.url.path)


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
            status=RequestValidationFailed.status,
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


async def _database_error(request: Request, raised: Exception) -> JSONResponse:
    # An outage is the server's trouble, but not a bug: the pool has discarded the
    # dead connections and a retry will likely work. Any other database error is a
    # bug, and answered as one.
    if not is_database_unavailable(raised):
        return await _unexpected_error(request, raised)
    logger.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, describe(raised)
    )
    outage = ServiceUnavailable("The database is unavailable; retry shortly.")
    return render_problem(outage, request.url.path, headers={"Retry-After": "1"})


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
    # Every database error a request can meet: 503 when the database is unavailable
    # (app.core.db.is_database_unavailable), 500 otherwise. Any other error, an
    # OSError from a full disk included, is what it is: handled where it can be
    # answered (a 507 for an upload), else a 500 logged with its traceback.
    for database_error in (DBAPIError, PoolTimeoutError, DatabaseUnreachable):
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)
