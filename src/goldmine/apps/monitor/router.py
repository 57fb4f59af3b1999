"""`/v1/apps/monitor/...`: post batches of items, read companies' sentiment over time and their alerts.

Every call is metered as one usage record of the app `monitor` (goldmine.apps.http.metered_call): a POST counts
its items against the monthly quota and bills the input tokens the models read; a read is a call with no items.
The models run on the server's shared micro-batchers, so monitor traffic and predict calls to the same model
version share forward passes. Alerts are delivered by the server's background task (`deliver_forever`), woken
after every batch that raised one.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import func, select

from goldmine.apps.http import Billed, app_model, check_texts, config_for, metered_call
from goldmine.apps.monitor.config import MonitorConfig
from goldmine.apps.monitor.items import Item, item_id, parse_time
from goldmine.apps.monitor.pipeline import Monitor
from goldmine.apps.monitor.report import series
from goldmine.apps.monitor.store import MonitorAggregate, MonitorAlert, MonitorDelivery
from goldmine.errors import ConfigError
from goldmine.serving.deps import PredictKey, ServicesDep
from goldmine.serving.errors import InvalidRequest, NotFound, Unavailable, error_responses

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/apps/monitor", tags=["apps: monitor"])
APP = "monitor"

Ticker = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^\$?[A-Za-z0-9.\-]+$")]


class ItemIn(BaseModel):
    id: str | None = Field(None, min_length=1, max_length=125, description="A stable id (default: a hash of time, "
                           "text and tickers); an item posted again under the same id is a duplicate, not counted.")
    time: datetime = Field(description="When it was published, ISO 8601 (without a zone: UTC).")
    text: str = Field(description="The headline or post (not blank; at most the server's characters per text).")
    tickers: list[Ticker] = Field(default_factory=list, max_length=32, description="Tickers its source tagged.")


class ItemsRequest(BaseModel):
    items: list[ItemIn] = Field(min_length=1, description="A batch in stream order (at most the server's texts "
                                "per call: 413 beyond).")


_MONITORS: dict[int, Monitor] = {}  # id(config) -> its pipeline (configs live as long as the server)
_WAKE: dict[str, asyncio.Event] = {}  # tenant -> wakes the delivery task


def monitor_for(services, config: MonitorConfig) -> Monitor:
    monitor = _MONITORS.get(id(config))
    if monitor is None or monitor.db is not services.db:
        monitor = _MONITORS[id(config)] = Monitor(config, services.db)
    return monitor


def _config(services, tenant: str) -> MonitorConfig:
    config = config_for(services, APP, tenant)
    assert isinstance(config, MonitorConfig)
    return config


@router.post("/items", responses=error_responses(401, 403, 404, 413, 422, 429, 503))
async def post_items(body: ItemsRequest, request: Request, key: PredictKey, services: ServicesDep) -> JSONResponse:
    """Analyse and store a batch: each item's sentiment and companies, and the alerts the batch raised."""
    config = _config(services, key.tenant)
    texts = [item.text for item in body.items]
    check_texts(texts, "items[{}].text", services.settings.limits)
    items = []
    for i, raw in enumerate(body.items):
        try:
            moment = parse_time(raw.time)
            tickers = tuple(dict.fromkeys(t.lstrip("$").upper() for t in raw.tickers))
        except (ValueError, OverflowError) as err:
            raise InvalidRequest(f"items[{i}]: {err}") from None
        text = raw.text.strip()
        items.append(Item(f"id:{raw.id}" if raw.id else item_id(moment, text, tickers), moment, text, tickers,
                          f"http:{request.state.request_id}"))
    monitor = monitor_for(services, config)

    async def run():
        sentiment_model = await app_model(services, config, "models.sentiment")
        try:
            polarity = config.polarity_of(list(sentiment_model.model.meta.label_names))
        except ConfigError as err:
            log.error("%s", err)
            raise Unavailable(f"app {APP!r} is misconfigured for this tenant: the sentiment model's labels need a "
                              "label_map in the app config") from None
        results = await sentiment_model.batcher.submit(texts)
        tokens = sum(count for _, count in results)
        entities = None
        if config.models.ner is not None:
            ner_model = await app_model(services, config, "models.ner")
            found = await ner_model.batcher.submit(texts)
            tokens += sum(count for _, count in found)
            entities = [prediction for prediction, _ in found]
        analysed = monitor.analyse(items, [p for p, _ in results], polarity, entities)
        stored = await asyncio.to_thread(monitor.store, analysed)
        if stored.alerts:
            _WAKE.setdefault(key.tenant, asyncio.Event()).set()
        new = {a.item.id for a in stored.stored}
        content = {
            "stored": len(stored.stored), "duplicates": stored.duplicates,
            "items": [{"id": a.item.id, "label": a.label, "score": round(a.score, 6), "companies": a.companies,
                       "duplicate": a.item.id not in new} for a in analysed],
            "alerts": [a.payload(key.tenant) for a in stored.alerts],
        }
        return content, Billed(config.models.sentiment.name, sentiment_model.version, tokens)

    return await metered_call(request, key, services, APP, len(items), run)


@router.get("/companies", responses=error_responses(401, 403, 404, 422, 429))
async def companies(request: Request, key: PredictKey, services: ServicesDep,
                    limit: Annotated[int, Query(ge=1, le=1000, description="Companies, most items first.")] = 100
                    ) -> JSONResponse:
    """The companies seen, with their items, negative share and alerts (in the first configured window)."""
    config = _config(services, key.tenant)

    async def run():
        def read() -> list[dict]:
            window = config.windows[0]
            with services.db.session() as session:
                rows = session.execute(
                    select(MonitorAggregate.company, func.sum(MonitorAggregate.items),
                           func.sum(MonitorAggregate.negative), func.sum(MonitorAggregate.score_sum))
                    .where(MonitorAggregate.tenant_id == key.tenant, MonitorAggregate.window == window)
                    .group_by(MonitorAggregate.company)
                    .order_by(func.sum(MonitorAggregate.items).desc(), MonitorAggregate.company).limit(limit)).all()
                alerts = dict(session.execute(select(MonitorAlert.company, func.count()).where(
                    MonitorAlert.tenant_id == key.tenant).group_by(MonitorAlert.company)).all())
            return [{"company": c, "items": int(n), "negative_share": round(neg / n, 6),
                     "mean_score": round(s / n, 6), "alerts": int(alerts.get(c, 0))} for c, n, neg, s in rows]

        return {"companies": await asyncio.to_thread(read)}, Billed()

    return await metered_call(request, key, services, APP, 0, run)


@router.get("/companies/{company}/series", responses=error_responses(401, 403, 404, 422, 429))
async def company_series(request: Request, key: PredictKey, services: ServicesDep,
                         company: Annotated[str, Path(min_length=1, max_length=128)],
                         window: Annotated[str | None, Query(description="A configured window (default: the first)."
                                                             )] = None,
                         since: datetime | None = None, until: datetime | None = None) -> JSONResponse:
    """A company's windows (items, negative/neutral/positive counts, mean score) and its alerts, oldest first."""
    config = _config(services, key.tenant)
    window = window or config.windows[0]
    if window not in config.all_windows():
        raise InvalidRequest(f"window: {window!r} is not aggregated; the windows are {config.all_windows()}")
    bounds = [parse_time(t) if t is not None else None for t in (since, until)]

    async def run():
        [entry] = await asyncio.to_thread(series, services.db, config, window, [company], 1, *bounds)
        if not entry.starts and not entry.alerts:
            raise NotFound(f"no items mention {company!r} in that period")
        return {"company": company, "window": window, "points": [
            {"start": s.isoformat() + "Z", "items": n, "mean_score": round(m, 6), "negative_share": round(ns, 6)}
            for s, n, m, ns in zip(entry.starts, entry.items, entry.mean_score, entry.negative_share, strict=True)],
            "alerts": [{"id": a.id, "rule": a.rule, "window_start": a.bucket_start.isoformat() + "Z",
                        "value": a.value, "message": a.message} for a in entry.alerts]}, Billed()

    return await metered_call(request, key, services, APP, 0, run)


@router.get("/alerts", responses=error_responses(401, 403, 404, 422, 429))
async def alerts(request: Request, key: PredictKey, services: ServicesDep,
                 company: Annotated[str | None, Query(max_length=128)] = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
    """The newest alerts (of one company, or all), each with its delivery state per sink."""
    _config(services, key.tenant)

    async def run():
        def read() -> list[dict]:
            with services.db.session() as session:
                query = select(MonitorAlert).where(MonitorAlert.tenant_id == key.tenant)
                if company is not None:
                    query = query.where(MonitorAlert.company == company)
                rows = session.scalars(query.order_by(MonitorAlert.created_at.desc(), MonitorAlert.id).limit(limit)
                                       ).all()
                deliveries: dict[str, dict] = {}
                for d in session.scalars(select(MonitorDelivery).where(
                        MonitorDelivery.alert_id.in_([r.id for r in rows]))):
                    deliveries.setdefault(d.alert_id, {})[d.sink] = {"status": d.status, "attempts": d.attempts}
            return [{"id": r.id, "rule": r.rule, "company": r.company, "window": r.window,
                     "window_start": r.bucket_start.isoformat() + "Z", "value": r.value, "message": r.message,
                     "created_at": r.created_at.isoformat(timespec="milliseconds") + "Z",
                     "deliveries": deliveries.get(r.id, {})} for r in rows]

        return {"alerts": await asyncio.to_thread(read)}, Billed()

    return await metered_call(request, key, services, APP, 0, run)


async def deliver_forever(services, configs: list[MonitorConfig]) -> None:
    """The server's delivery loop: each tenant's due alerts every `delivery.poll_seconds`, or at once when a batch
    raised one. A failing round is logged and tried again; cancelled when the server stops."""
    from goldmine.apps.monitor.delivery import Outbox

    outboxes = []
    for config in configs:
        try:
            outboxes.append(Outbox(config, services.db))
        except ConfigError as err:  # e.g. the webhook secret's variable is unset: the others still deliver
            log.error("monitor alerts of tenant %s will not be delivered: %s", config.tenant, err)
    if not outboxes:
        return
    poll = min(o.config.delivery.poll_seconds for o in outboxes)
    while True:
        for outbox in outboxes:
            _WAKE.setdefault(outbox.tenant, asyncio.Event()).clear()
            try:
                await asyncio.to_thread(outbox.deliver_due)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("delivering monitor alerts of tenant %s failed", outbox.tenant)
        waits = [asyncio.ensure_future(_WAKE[o.tenant].wait()) for o in outboxes]
        done, pending = await asyncio.wait(waits, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
        for future in pending:
            future.cancel()
