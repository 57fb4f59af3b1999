"""What every app's HTTP router shares: its config for the calling tenant, its models from the server's pool, input
limits, and one metered call, so an app is billed, rate-limited and refused exactly as predict is.

`goldmine serve` mounts every registered app's router under `/v1/apps/<name>/` behind the same keys (scope
`predict`), tenants, rate limits and monthly quota as the model routes. Each call is one usage record carrying the
app's name (and the main model it ran), committed before the answer leaves, so the invoice has a line per app.
A tenant reaches an app through the app config that names it (serving setting `apps`); an app that is not
registered, or not set up for the caller's tenant, is a 404 that says which; a config naming a model version the
registry lacks is a 503 that names the config field (and logs the file and line for the operator).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from goldmine.apps.base import AppConfig, ModelRef, app_names, get_app, load_app_config, resolve_models
from goldmine.errors import ConfigError, GoldmineError
from goldmine.serving.auth import KeyInfo
from goldmine.serving.deps import CurrentKey, PredictKey, ServicesDep
from goldmine.serving.errors import InvalidRequest, NotFound, PayloadTooLarge, Unavailable, error_responses
from goldmine.serving.metering import Usage
from goldmine.serving.settings import Limits, ServingSettings

log = logging.getLogger(__name__)
PREFIX = "/v1/apps"


def load_served_apps(settings: ServingSettings) -> dict[tuple[str, str], AppConfig]:
    """The app configs the settings name, by (app, tenant). A file that does not load stops the server (a
    ConfigError naming its line); two files for the same app and tenant do too."""
    configs: dict[tuple[str, str], AppConfig] = {}
    for path in settings.apps:
        config = load_app_config(path)
        key = (config.app, config.tenant)
        if key in configs:
            raise ConfigError(f"{path}: app {config.app!r} of tenant {config.tenant!r} is configured twice (also in "
                              f"{configs[key].source}); keep one file")
        configs[key] = config
    return configs


def check_served_apps(services) -> None:
    """Log each served config whose models the registry does not have (its calls get 503 until fixed): one
    broken config must not keep the other apps, or the model routes, offline."""
    for config in services.apps.values():
        try:
            resolve_models(config, services.db)
        except ConfigError as err:
            log.error("%s", err)


@dataclass
class Background:
    """The apps' background tasks (e.g. the monitor's alert delivery), started and stopped with the server."""

    tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self, services) -> None:
        for name in app_names():
            spec = get_app(name)
            configs = [c for (app, _), c in services.apps.items() if app == name]
            if spec.background and configs:
                self.tasks.append(asyncio.create_task(spec.load("background")(services, configs), name=name))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()


def config_for(services, app: str, tenant: str) -> AppConfig:
    """The config of `app` for `tenant`; 404 for an app that does not exist or is not set up for the tenant."""
    try:
        get_app(app)
    except ConfigError:
        raise NotFound(f"no app named {app!r}; the apps are: {', '.join(app_names())}") from None
    config = services.apps.get((app, tenant))
    if config is None:
        raise NotFound(f"app {app!r} is not set up for this tenant (the server's operator adds an app config for it: "
                       "serving setting `apps`)")
    return config


async def app_model(services, config: AppConfig, field_name: str):
    """The loaded model a config field names (`models.sentiment`), from the server's pool (shared micro-batcher)."""
    from goldmine.serving.routers.predict import resolve_version

    ref = config.model_refs().get(field_name)
    if not isinstance(ref, ModelRef):
        raise Unavailable(f"app {config.app!r}: {field_name} is not set in its config")
    try:
        version, path = await resolve_version(services, ref.name, ref.version, config.tenant)
    except NotFound as err:
        log.error("%s: %s: %s", config.where(field_name), field_name, err)
        raise Unavailable(f"app {config.app!r} is misconfigured for this tenant: {field_name}: {err}; register that "
                          "version or correct the app config") from None
    return await services.pool.get(ref.name, version, path)


def check_texts(texts: list[str], where: str, limits: Limits) -> None:
    """Refuse what predict refuses: too many texts or characters (413), blank text or text that is not Unicode (a
    lone surrogate, which no tokenizer takes) (422). `where` names the field in messages, e.g. `items[{}].text`."""
    if not texts:
        raise InvalidRequest(f"{where.split('[')[0]}: give at least one")
    if len(texts) > limits.max_items_per_call:
        raise PayloadTooLarge(f"{len(texts)} items in one call; the limit is {limits.max_items_per_call}: split the "
                              "call")
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars_per_text:
            raise PayloadTooLarge(f"{where.format(i)} has {len(text)} characters; the limit is "
                                  f"{limits.max_chars_per_text}")
        if not text.strip():
            raise InvalidRequest(f"{where.format(i)} is empty")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise InvalidRequest(f"{where.format(i)} is not valid Unicode text (a lone surrogate at character "
                                     f"{err.start}): send UTF-8 text") from None


@dataclass
class Billed:
    """What an app call ran, for its usage record: its main model (and version), tokens read, texts processed."""

    model: str = ""
    version: str = ""
    input_tokens: int = 0


async def metered_call(request: Request, key: KeyInfo, services, app: str, items: int,
                       run: Callable[[], Awaitable[tuple[dict[str, Any], Billed]]]) -> JSONResponse:
    """Rate limit, reserve `items` of the monthly quota, `run()`, and commit the usage record (with the app's name)
    before answering; the quota is given back when the call fails. Returns `run`'s content as JSON."""
    started = time.perf_counter()
    request.state.log = {**getattr(request.state, "log", {}), "app": app, "items": items}
    request.state.metrics_model = f"app:{app}"
    rate = await services.limiter.check_rate(key.id, key.rate or services.settings.default_rate)
    headers = rate.headers() if rate else {}
    if items:
        await services.limiter.reserve_quota(key.id, key.monthly_quota, items)
    try:
        content, billed = await run()
        await services.meter.record(Usage(
            request_id=request.state.request_id, tenant=key.tenant, key_id=key.id, model=billed.model,
            version=billed.version, items=items, input_tokens=billed.input_tokens, app=app,
            latency_ms=round((time.perf_counter() - started) * 1000, 3)))
    except BaseException:
        if items:
            await services.limiter.release_quota(key.id, items)
        raise
    return JSONResponse({"request_id": request.state.request_id, **content}, headers=headers)


# ---- the routes every server has: the list of apps, and a clear 404 for the ones that do not exist -------------

router = APIRouter(prefix=PREFIX, tags=["apps"])


class AppOut(BaseModel):
    name: str
    summary: str
    set_up: bool = Field(description="Whether the app is set up for the caller's tenant (an app config names it).")
    models: dict[str, ModelRef] = Field(description="The models its config names, by config field.")


@router.get("", response_model=list[AppOut], responses=error_responses(401, 403))
async def list_apps(key: PredictKey, services: ServicesDep) -> list[AppOut]:
    """The apps of this server, and which are set up for the caller's tenant."""
    out = []
    for name in app_names():
        config = services.apps.get((name, key.tenant))
        out.append(AppOut(name=name, summary=get_app(name).summary, set_up=config is not None,
                          models=config.model_refs() if config else {}))
    return out


unknown = APIRouter(prefix=PREFIX, include_in_schema=False)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@unknown.api_route("/{name}", methods=METHODS)
@unknown.api_route("/{name}/{rest:path}", methods=METHODS)
async def unknown_route(name: str, request: Request, key: CurrentKey, rest: str = "") -> None:
    """Matched after every app's own routes: an app that does not exist, or a path an app does not have."""
    try:
        get_app(name)
    except GoldmineError:
        raise NotFound(f"no app named {name!r}; the apps are: {', '.join(app_names())}") from None
    raise NotFound(f"app {name!r} has no route {request.method} {request.url.path}")


def mount(app: FastAPI) -> None:
    """Include the apps list, every registered app's router, then the catch-all 404 (order matters)."""
    app.include_router(router)
    for name in app_names():
        app.include_router(get_app(name).load("router"))
    app.include_router(unknown)
