"""`/v1/apps/recommend/...`: the recommender over HTTP, behind the scaffolding's keys, tenants, limits and metering.

    POST /v1/apps/recommend/recommend     {user_id | history, k?, filters?} -> ranked items with explanations (1 item)
    POST /v1/apps/recommend/items         {items: [{id, title, categories?, tags?, description?}]} -> added (one
                                          billed item per new item: each is embedded)
    POST /v1/apps/recommend/interactions  {interactions: [{user_id, item_id, rating?, timestamp?}]} -> added, and
                                          a counted warning for items outside the catalog (no item billed)

The encoder comes from the server's pool, so new items are embedded on the same micro-batcher workers as the
model routes' requests (outside a batch, as an index search is); a request reads stored vectors and runs no
model. The state is opened once per config and encoder version (`RecommendApp`: its locks make concurrent
additions safe) and opened again, re-embedding the catalog, when the config's alias moves to another version.
Every answer comes from `api.RecommendApp`, the object the Python API and the CLI use.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, StringConstraints

from goldmine.apps.base import ResolvedModel
from goldmine.apps.http import Billed, app_model, check_texts, config_for, metered_call
from goldmine.apps.recommend.api import ENCODER, RecommendApp, StateMissing, parse_interactions
from goldmine.apps.recommend.config import MAX_K, RecommendConfig
from goldmine.apps.recommend.data import Item
from goldmine.apps.recommend.recommender import MAX_HISTORY, UnknownUser
from goldmine.serving.deps import PredictKey, ServicesDep
from goldmine.serving.errors import InvalidRequest, NotFound, PayloadTooLarge, Unavailable, error_responses

APP = "recommend"
router = APIRouter(prefix=f"/v1/apps/{APP}", tags=["apps: recommend"])
_OPEN: dict[tuple[int, str], RecommendApp] = {}  # (id(config), encoder version) -> its state
_OPENING = threading.Lock()  # one opening (maybe a re-embedding) at a time

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Word = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class HistoryEntry(BaseModel):
    item_id: Id
    rating: float | None = Field(None, allow_inf_nan=False, description="Below the like threshold: seen, not liked.")
    timestamp: float | None = Field(None, allow_inf_nan=False, description="Any increasing number (epoch seconds).")


class FiltersIn(BaseModel):
    exclude_seen: bool = Field(True, description="Leave out the items of the user's history.")
    categories: list[Word] | None = Field(None, max_length=100, description="Only items of one of these.")
    items: list[Id] | None = Field(None, description="Only these item ids (in stock, new arrivals).")
    exclude_items: list[Id] = Field(default_factory=list, description="Never these item ids.")


class RecommendIn(BaseModel):
    user_id: Id | None = Field(None, description="A user the recommender knows (its interactions).")
    history: list[Id | HistoryEntry] | None = Field(None, description="Instead of user_id: the items a user "
                                                    "interacted with, oldest first (ids, or {item_id, rating, "
                                                    "timestamp}); empty: the most popular items.")
    k: int | None = Field(None, ge=1, le=MAX_K, description="How many (default: the config's default_k).")
    filters: FiltersIn | None = None


class Similar(BaseModel):
    item_id: str
    title: str
    similarity: float


class Explanation(BaseModel):
    text: str = Field(description="`Because you liked A and B`, or why a popular item was chosen.")
    similar_to: list[Similar] = Field(description="The liked items this recommendation is closest to.")


class Recommendation(BaseModel):
    item_id: str
    title: str
    score: float
    explanation: Explanation


class RecommendOut(BaseModel):
    request_id: str
    recommendations: list[Recommendation]


class ItemIn(BaseModel):
    id: Id
    title: str = Field(min_length=1, description="The item's title (not blank).")
    categories: list[Word] = Field(default_factory=list, max_length=32)
    tags: list[Word] = Field(default_factory=list, max_length=64)
    description: str = ""


class ItemsIn(BaseModel):
    items: list[ItemIn] = Field(description="New items (ids not in the catalog yet); at most the server's texts per "
                                "call (413 beyond).")


class InteractionIn(BaseModel):
    user_id: Id
    item_id: Id
    rating: float | None = Field(None, allow_inf_nan=False, description="None: a like (a click, a purchase).")
    timestamp: float | None = Field(None, allow_inf_nan=False, description="Default: when the server receives it.")


class InteractionsIn(BaseModel):
    interactions: list[InteractionIn] = Field(description="At most the server's texts per call (413 beyond).")


def _config(services, tenant: str) -> RecommendConfig:
    config = config_for(services, APP, tenant)
    assert isinstance(config, RecommendConfig)
    return config


async def _opened(services, config: RecommendConfig) -> tuple[RecommendApp, object]:
    """The tenant's state on the encoder version its config names now, and that encoder from the pool."""
    from goldmine.serving.routers.predict import resolve_version

    loaded = await app_model(services, config, ENCODER)  # 503 naming the config field for a missing version
    key = (id(config), loaded.version)
    opened = _OPEN.get(key)
    if opened is not None and opened.config is config:
        return opened, loaded
    _, path = await resolve_version(services, config.models.encoder.name, config.models.encoder.version,
                                    config.tenant)

    def open_state() -> RecommendApp:
        with _OPENING:
            current = _OPEN.get(key)
            if current is not None and current.config is config:
                return current
            try:
                current = RecommendApp.on(config, ResolvedModel(ENCODER, loaded.name, loaded.version, path))
            except StateMissing as err:
                raise Unavailable(f"app {APP!r} has no recommender for this tenant yet: {err}") from None
            for other in [k for k in _OPEN if k[0] == id(config)]:
                del _OPEN[other]  # the alias moved on (or a config of the same id is gone)
            _OPEN[key] = current
            return current

    return await asyncio.to_thread(open_state), loaded


@router.post("/recommend", response_model=RecommendOut,
             responses=error_responses(401, 403, 404, 413, 422, 429, 503))
async def recommend(body: RecommendIn, request: Request, key: PredictKey, services: ServicesDep):
    """The best items for a known user or a history, each explained by the liked items it is closest to."""
    config = _config(services, key.tenant)
    if body.history is not None and len(body.history) > MAX_HISTORY:
        raise PayloadTooLarge(f"history: {len(body.history)} entries; the limit is {MAX_HISTORY} (send the most "
                              "recent)")
    history = None if body.history is None else [h if isinstance(h, str) else h.model_dump(exclude_none=True)
                                                 for h in body.history]
    filters = body.filters.model_dump() if body.filters is not None else None

    async def run():
        opened, loaded = await _opened(services, config)
        try:
            answers = await asyncio.to_thread(opened.recommend, body.user_id, history, body.k, filters)
        except UnknownUser as err:
            raise NotFound(str(err)) from None
        return {"recommendations": answers}, Billed(loaded.name, loaded.version, 0)

    return await metered_call(request, key, services, APP, 1, run)


@router.post("/items", responses=error_responses(401, 403, 404, 413, 422, 429, 503))
async def add_items(body: ItemsIn, request: Request, key: PredictKey, services: ServicesDep):
    """New items, recommendable at once from their text alone (cold start). Ids must be new: an id already in the
    catalog, or given twice, refuses the whole call (422) and nothing is added."""
    config = _config(services, key.tenant)
    items = [Item(i.id, i.title.strip(), tuple(i.categories), tuple(i.tags), i.description) for i in body.items]
    for n, item in enumerate(items):
        if not item.title:
            raise InvalidRequest(f"items[{n}].title is empty")
    check_texts([item.text() for item in items], "items[{}]", services.settings.limits)

    async def run():
        opened, loaded = await _opened(services, config)

        def embed_and_add():
            tokens = sum(len(f["input_ids"]) for f in loaded.model.features([item.text() for item in items]))
            return opened.add_items(items, model=loaded.model), tokens

        added, tokens = await loaded.batcher.run_alone(embed_and_add)
        return added, Billed(loaded.name, loaded.version, tokens)

    return await metered_call(request, key, services, APP, len(items), run)


@router.post("/interactions", responses=error_responses(401, 403, 404, 413, 422, 429, 503))
async def add_interactions(body: InteractionsIn, request: Request, key: PredictKey, services: ServicesDep):
    """Record interactions so that the next requests see them; those with items outside the catalog are skipped
    and counted in `warnings` (the others are kept)."""
    config = _config(services, key.tenant)
    if not body.interactions:
        raise InvalidRequest("interactions: give at least one")
    limit = services.settings.limits.max_items_per_call
    if len(body.interactions) > limit:
        raise PayloadTooLarge(f"{len(body.interactions)} interactions in one call; the limit is {limit}: split the "
                              "call")
    events = parse_interactions([i.model_dump() for i in body.interactions])

    async def run():
        opened, loaded = await _opened(services, config)
        added = await asyncio.to_thread(opened.add_interactions, events)
        return added, Billed(loaded.name, loaded.version, 0)

    return await metered_call(request, key, services, APP, 0, run)
