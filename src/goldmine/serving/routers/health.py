"""Liveness, readiness and Prometheus metrics (unauthenticated: bind to a private address or put auth in front)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from goldmine.serving.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


class Readiness(BaseModel):
    status: str = Field(description="ready | not ready")
    database: bool
    limits: bool = Field(description="The rate-limit store (Redis, when used) answers.")
    started: bool = Field(description="Startup (migrations, model preload) finished.")
    loaded: list[str] = Field(description="Loaded model versions, as name@version.")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "Not ready."}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready for traffic: startup (migrations, model preload) finished; the database (and Redis, if used) answer."""
    database = await asyncio.to_thread(services.db.ping)
    limits = await services.limiter.ping()
    ready = services.ready and database and limits
    body = {"status": "ready" if ready else "not ready", "database": database, "limits": limits,
            "started": services.ready,
            "loaded": [f"{n}@{v}" for n, v in services.pool.loaded]}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics."}})
async def metrics(services: ServicesDep) -> Response:
    """Prometheus text format."""
    body, content_type = services.metrics.render()
    return Response(body, media_type=content_type)
