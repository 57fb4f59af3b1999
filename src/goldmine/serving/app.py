"""The app factory: `create_app(settings)` builds the FastAPI app; its lifespan opens the database (migrating it),
loads the production versions, and on shutdown drains every batcher.

Every error becomes `{"error": {"code", "message"}}` with the status from `errors.http_status` — the one place
where exceptions meet HTTP. Validation errors never echo the offending input back (it may be personal data).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import goldmine
from goldmine.errors import GoldmineError
from goldmine.serving.cache import TtlCache
from goldmine.serving.db import ModelAlias, ModelVersion, open_database
from goldmine.serving.deps import Services
from goldmine.serving.errors import ServingError, error_code, http_status
from goldmine.serving.metering import Meter
from goldmine.serving.metrics import Metrics
from goldmine.serving.middleware import RequestMiddleware
from goldmine.serving.ratelimit import Limiter, LocalLimiter, RedisLimiter
from goldmine.serving.routers import admin, health, models, predict, usage
from goldmine.serving.runtime import ModelPool
from goldmine.serving.settings import ServingSettings, load_settings

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GoldmineError)
    async def goldmine_error(request: Request, err: GoldmineError) -> JSONResponse:
        status = http_status(err)
        message = str(err)
        if status >= 500 and not isinstance(err, ServingError):  # e.g. a broken model directory: say no paths
            log.error("%s: %s", type(err).__name__, err)
            message = "internal server error"
        return _error(status, error_code(err), message, getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                    for e in err.errors()]  # no "input": it may hold personal data
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in problems)
        return JSONResponse({"error": {"code": "invalid_request", "message": message, "details": problems}},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return _error(err.status_code, code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "internal_error", "internal server error")


def build_limiter(settings: ServingSettings, meter: Meter) -> Limiter:
    """Shared limits through Redis when `redis_url` is set, else in-process ones."""
    if settings.redis_url:
        return RedisLimiter(settings.redis_url, meter.texts_used, settings.redis_prefix)
    return LocalLimiter(meter.texts_used)


def _production_versions(services: Services) -> list[tuple[str, str, str]]:
    with services.db.session() as session:
        rows = session.query(ModelAlias, ModelVersion).join(
            ModelVersion, (ModelVersion.model_name == ModelAlias.model_name)
            & (ModelVersion.version == ModelAlias.version)).filter(ModelAlias.alias == services.settings.default_alias)
        return [(alias.model_name, version.version, version.path) for alias, version in rows]


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    """The serving app. Nothing touches the database or models until the lifespan starts."""
    settings = settings or load_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.inference_threads:
            import torch

            torch.set_num_threads(settings.inference_threads)
        db = await asyncio.to_thread(open_database, settings)
        meter = Meter(db, on_failure=metrics.usage_write_failures.inc)
        services = Services(settings, db, meter, build_limiter(settings, meter), ModelPool(settings, metrics),
                            metrics, TtlCache(settings.auth_cache_seconds), TtlCache(settings.alias_cache_seconds))
        app.state.services = services
        if settings.preload:
            for name, version, path in await asyncio.to_thread(_production_versions, services):
                try:
                    await services.pool.get(name, version, path)
                except GoldmineError as err:  # a broken version must not keep the others offline
                    log.error("could not load %s@%s: %s", name, version, err)
        services.ready = True
        try:
            yield
        finally:
            services.ready = False
            await services.pool.close()
            await services.limiter.close()
            db.dispose()

    options = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:  # FastAPI >= 0.16x: native OpenTelemetry
        options["telemetry"] = {"tracing": settings.opentelemetry, "metrics": settings.opentelemetry,
                                "logs": settings.opentelemetry}
    app = FastAPI(title="goldmine", version=goldmine.__version__, lifespan=lifespan,
                  description="Metered, authenticated predictions from fine-tuned goldmine models.", **options)
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body_bytes=settings.limits.max_body_bytes)
    install_error_handlers(app)
    for module in (predict, models, usage, admin, health):
        app.include_router(module.router)
    app.state.metrics = metrics
    return app
