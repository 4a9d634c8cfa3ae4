"""Liveness and readiness probes."""

from fastapi import APIRouter

from app.core.errors import ServiceUnavailable, problem_responses
from app.core.openapi import success_response
from app.routers.deps import DatabaseDep
from app.routers.security import PUBLIC
from app.schemas import examples
from app.schemas.health import Health, Readiness
from app.services import health

# Probes answer anyone: orchestrators and load balancers hold no keys.
router = APIRouter(tags=["health"], dependencies=[PUBLIC])


# HEAD too: load balancers and uptime checkers often probe with it.
@router.get(
    "/healthz",
    response_model=Health,
    summary="The process is alive",
    responses=success_response(200, "Alive: it answers HTTP.", examples.HEALTH),
)
@router.head(
    "/healthz",
    response_model=Health,
    summary="The process is alive (headers only)",
    responses=success_response(200, "Alive: it answers HTTP."),
)
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database answers and is migrated to the code's revision",
    responses={
        **success_response(200, "Ready to serve: send it traffic.", examples.READY),
        **problem_responses(ServiceUnavailable, validation=False),
    },
)
@router.head(
    "/readyz",
    response_model=Readiness,
    summary="The database answers and is migrated (headers only)",
    responses={
        **success_response(200, "Ready to serve: send it traffic."),
        **problem_responses(ServiceUnavailable, validation=False),
    },
)
async def readyz(database: DatabaseDep) -> Readiness:
    revision = await health.check_ready(database.request_engine)
    return Readiness(migration=revision)
