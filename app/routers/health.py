"""Liveness and readiness probes."""

from fastapi import APIRouter

from app.core.errors import ServiceUnavailable, problem_responses
from app.routers.deps import DatabaseDep
from app.routers.security import PUBLIC
from app.schemas.health import Health, Readiness
from app.services import health

# Probes answer anyone: orchestrators and load balancers hold no keys.
router = APIRouter(tags=["health"], dependencies=[PUBLIC])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database answers and is migrated to the code's revision",
    responses=problem_responses(ServiceUnavailable, validation=False),
)
async def readyz(database: DatabaseDep) -> Readiness:
    revision = await health.check_ready(database.request_engine)
    return Readiness(migration=revision)
