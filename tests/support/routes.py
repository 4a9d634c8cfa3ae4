"""The app's route table, and who each route says may call it."""

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from app.routers.security import anyone, authenticate


@dataclass(frozen=True)
class RouteAccess:
    method: str
    path: str
    public: bool  # declared PUBLIC
    scopes: tuple[str, ...]  # declared with requires(...)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _declarations(dependant: Dependant) -> tuple[bool, list[str]]:
    public, scopes = False, []
    pending = list(dependant.dependencies)
    while pending:
        dependency = pending.pop()
        public = public or dependency.call is anyone
        if dependency.call is authenticate:
            scopes.extend(dependency.own_oauth_scopes or [])
        pending.extend(dependency.dependencies)
    return public, scopes


def api_routes(app: FastAPI) -> list[RouteAccess]:
    """Every method and path of every API route, with what it declares (router-level
    dependencies included, as FastAPI applies them)."""
    table: list[RouteAccess] = []
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        public, scopes = _declarations(context.dependant)
        table.extend(
            RouteAccess(method, str(context.path), public, tuple(scopes))
            for method in sorted(context.methods or ())
        )
    return table


def other_routes(app: FastAPI) -> list[str]:
    """Paths of routes that are not API routes (the docs and the schema)."""
    return [
        str(context.path)
        for context in iter_route_contexts(app.routes)
        if not isinstance(context.original_route, APIRoute)
    ]
