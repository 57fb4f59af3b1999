"""The app factory: `create_app(settings)` builds the FastAPI app; its lifespan opens the database (migrating it),
loads the production versions, and on shutdown drains every batcher.

Every error becomes `{"error": {"code", "message"}}` with the status from `errors.http_status` — the one place
where exceptions meet HTTP. Validation errors never echo the offending input back (it may be personal data).
A body that cannot be read (not UTF-8, JSON nested too deeply) is a 422 like any other malformed body.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from goldmine import console
from goldmine.apps import http as apps_http
from goldmine.errors import DataError, GoldmineError
from goldmine.monitoring.windows import DriftMonitor
from goldmine.serving import feedback as feedback_store
from goldmine.serving.cache import TtlCache
from goldmine.serving.db import ModelAlias, ModelVersion, open_database
from goldmine.serving.deps import Services
from goldmine.serving.docs import install_docs
from goldmine.serving.errors import ServingError, error_code, http_status
from goldmine.serving.metering import Meter, purge_periodically
from goldmine.serving.metrics import Metrics
from goldmine.serving.middleware import SENT_CONTENT_TYPE, RequestMiddleware
from goldmine.serving.ratelimit import Limiter, LocalLimiter, RedisLimiter
from goldmine.serving.routers import (
    admin,
    completions,
    datasets,
    embeddings,
    feedback,
    health,
    jobs,
    models,
    monitoring,
    predict,
    search,
    usage,
)
from goldmine.serving.runtime import ModelPool
from goldmine.serving.settings import ServingSettings, load_settings
from goldmine.version import __version__

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
        if isinstance(err, DataError):  # an invalid dataset: every problem, as file:line: reason
            return JSONResponse({"error": {"code": error_code(err), "message": message.split("\n")[0],
                                           "issues": [str(issue) for issue in err.issues]}}, status_code=status)
        return _error(status, error_code(err), message, getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                    for e in errors]  # no "input": it may hold personal data
        hint = _content_type_hint(request)
        message = "; ".join(_problem(p, e.get("ctx"), hint) for p, e in zip(problems, errors, strict=True))
        return JSONResponse({"error": {"code": "invalid_request", "message": message, "details": problems}},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        cause = err.__cause__  # FastAPI answers 400 for a body it could not parse, with the reason as the cause
        if err.status_code == 400 and isinstance(cause, UnicodeDecodeError):
            return _error(422, "invalid_request", f"body: not valid UTF-8 (byte {cause.start}); send JSON in UTF-8")
        if err.status_code == 400 and isinstance(cause, RecursionError):
            return _error(422, "invalid_request", "body: JSON nested too deeply")
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        return _error(err.status_code, code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "internal_error", "internal server error")


def _where(loc: list) -> str:
    """`["body", "texts", 0]` -> `texts[0]`; `["query", "month"]` -> `month (query)`."""
    kind, rest = (loc[0], loc[1:]) if loc and loc[0] in ("body", "query", "header", "path") else ("body", loc)
    if kind == "body" and rest and isinstance(rest[0], int) and len(rest) == 1:
        rest = []  # the character position of a JSON syntax error, said in the message instead
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest).lstrip(".")
    return (where or "body") if kind == "body" else f"{where} ({kind})"


def _content_type_hint(request: Request) -> str:
    """What to add when a body was not JSON: the Content-Type it was sent with, if that was not JSON."""
    sent = getattr(request.state, SENT_CONTENT_TYPE, None)  # a missing or form type, read as JSON on trial
    if sent is None:
        sent = request.headers.get("content-type", "")
        if sent.split(";")[0].strip().lower().endswith(("/json", "+json")):
            return ""
    return f"; send Content-Type: application/json (it came as {sent or 'no Content-Type'})"


def _problem(problem: dict, ctx: dict | None, hint: str) -> str:
    where, kind = _where(problem["loc"]), problem["type"]
    if kind == "json_invalid":
        reason = (ctx or {}).get("error", "")
        return f"{where}: not valid JSON ({reason} at character {problem['loc'][-1]}); the body must be a JSON " \
               f"object{hint}"
    if where == "body" and kind in ("model_attributes_type", "dict_type", "missing"):
        return f"body: the body must be a JSON object{hint}"
    return f"{where}: {problem['msg']}"


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
        if settings.inference_threads or settings.batching.workers is None:
            import torch

            # unset: one single-threaded forward pass per worker, one worker per core (see compute_workers)
            torch.set_num_threads(settings.inference_threads or 1)
        db = await asyncio.to_thread(open_database, settings)
        meter = Meter(db, on_failure=metrics.usage_write_failures.inc,
                      replay_ttl_seconds=settings.idempotency_ttl_seconds)
        services = Services(settings, db, meter, build_limiter(settings, meter), ModelPool(settings, metrics),
                            metrics, TtlCache(settings.auth_cache_seconds), TtlCache(settings.alias_cache_seconds))
        services.drift = DriftMonitor(settings.drift, metrics, db)
        services.apps = await asyncio.to_thread(apps_http.load_served_apps, settings)
        await asyncio.to_thread(apps_http.check_served_apps, services)
        app.state.services = services
        if settings.preload:
            for name, version, path in await asyncio.to_thread(_production_versions, services):
                try:
                    await services.pool.get(name, version, path)
                except GoldmineError as err:  # a broken version must not keep the others offline
                    log.error("could not load %s@%s: %s", name, version, err)
        services.ready = True
        purger = asyncio.create_task(purge_periodically(meter, min(settings.idempotency_ttl_seconds, 3600.0)))
        answered_purger = asyncio.create_task(feedback_store.purge_periodically(db, settings))
        background = apps_http.Background()
        background.start(services)
        try:
            yield
        finally:
            services.ready = False
            await background.stop()
            for task in (purger, answered_purger):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await services.drift.flush()
            await services.pool.close()
            await services.limiter.close()
            db.dispose()

    options = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:  # FastAPI >= 0.16x: native OpenTelemetry
        options["telemetry"] = {"tracing": settings.opentelemetry, "metrics": settings.opentelemetry,
                                "logs": settings.opentelemetry}
    app = FastAPI(title="goldmine", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Metered, authenticated predictions from fine-tuned goldmine models.", **options)
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body_bytes=settings.limits.max_body_bytes,
                       streamed=(datasets.PATH, console.UPLOAD_PATH))
    install_error_handlers(app)
    for module in (predict, feedback, embeddings, completions, search, models, monitoring, datasets, jobs, usage,
                   admin, health):
        app.include_router(module.router)
    apps_http.mount(app)  # /v1/apps/<name>/...: every registered app
    console.mount(app, settings)  # /console: the web console (goldmine.console)
    install_docs(app)
    _document_limits(app, settings)
    app.state.metrics = metrics
    return app


def _document_limits(app: FastAPI, settings: ServingSettings) -> None:
    """The OpenAPI schema states this server's `limits` (texts per call, characters per text), so what it
    accepts is what it says; beyond them the server answers 413, as the schema's responses say."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            predict.document_limits(schema, settings.limits)
            completions.document_limits(schema, settings.generation, completions.prompt_chars(settings))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
