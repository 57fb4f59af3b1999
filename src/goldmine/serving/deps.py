"""FastAPI dependencies as `Annotated` aliases: the services, the calling key and its scopes.

There is deliberately no request-scoped database session: the functions that touch the database open short
transactions of their own in worker threads, so no request holds a connection (or SQLite's write lock) while
it waits for a batch. A key that authenticated recently, and an alias resolved recently, come from short-lived
caches (`auth_cache_seconds`, `alias_cache_seconds`) without a look-up.

The dependencies are `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per
request for a few attribute reads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from goldmine.serving.auth import KeyInfo, authenticate, cache_key
from goldmine.serving.cache import TtlCache
from goldmine.serving.db import Database
from goldmine.serving.metering import Meter
from goldmine.serving.metrics import Metrics
from goldmine.serving.ratelimit import Limiter
from goldmine.serving.runtime import ModelPool
from goldmine.serving.settings import ServingSettings


@dataclass
class Services:
    """Everything a request handler may need, built once per app in its lifespan."""

    settings: ServingSettings
    db: Database
    meter: Meter
    limiter: Limiter
    pool: ModelPool
    metrics: Metrics
    keys: TtlCache[KeyInfo] = field(default_factory=lambda: TtlCache(0))  # keys that authenticated
    versions: TtlCache[tuple[str, str]] = field(default_factory=lambda: TtlCache(0))  # (model, ref, tenant) -> ...
    apps: dict = field(default_factory=dict)  # (app, tenant) -> its AppConfig (goldmine.apps.http)
    ready: bool = False
    job_queue: object | None = None  # goldmine.serving.worker.JobQueue, opened on first use
    drift: object | None = None  # goldmine.monitoring.windows.DriftMonitor, set by the app's lifespan

    def queue(self):
        """The jobs queue (huey), opened on first use so a server that runs no jobs never touches it."""
        if self.job_queue is None:
            from goldmine.serving.worker import JobQueue

            self.job_queue = JobQueue(self.settings)
        return self.job_queue


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer gm_<id>_<secret>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same key in X-API-Key.")


async def current_key(
    request: Request,
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key)],
) -> KeyInfo:
    raw = bearer.credentials if bearer else api_key
    if raw:
        key = await services.keys.load(cache_key(raw), lambda: asyncio.to_thread(authenticate, services.db, raw))
    else:
        key = authenticate(services.db, raw)  # raises Unauthorized: no key sent
    request.state.log = {**getattr(request.state, "log", {}), "tenant": key.tenant, "key_id": key.id}
    return key


CurrentKey = Annotated[KeyInfo, Depends(current_key)]


def require(scope: str):
    """A dependency that passes the key on if it has `scope` (403 otherwise)."""

    async def check(key: CurrentKey) -> KeyInfo:
        key.require(scope)
        return key

    return check


PredictKey = Annotated[KeyInfo, Depends(require("predict"))]
TrainKey = Annotated[KeyInfo, Depends(require("train"))]
AdminKey = Annotated[KeyInfo, Depends(require("admin"))]
