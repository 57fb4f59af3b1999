"""`POST /v1/models/{name}/indexes/{index}/search`: top-k entries of a model's search index (goldmine.retrieval).

An index belongs to the model version it was built with (`goldmine index build RUN_DIR ...`, then `goldmine
models register`): the route resolves the model's alias as predict does, so tenants, keys, rate limits, quota and
metering are the same, and queries are embedded by the very model the index's vectors came from. Billed per
query by its input tokens.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from goldmine.errors import InputError
from goldmine.serving.deps import PredictKey, ServicesDep
from goldmine.serving.errors import InvalidRequest, NotFound, PayloadTooLarge, error_responses
from goldmine.serving.masking import describe_inputs
from goldmine.serving.metering import Usage
from goldmine.serving.routers.predict import resolve_version

router = APIRouter(prefix="/v1/models", tags=["search"])
_LOADED: OrderedDict[tuple[str, str, int], object] = OrderedDict()  # (version path, index, version) -> Index
LOADED_INDEXES = 16  # the most recently used indexes kept in memory


QueryText = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]


class Rerank(BaseModel):
    model: str = Field(description="A registered pair classification model of the same tenant (a cross-encoder).")
    version: str | None = Field(None, max_length=64, description="Its alias or version id (default: the default "
                                "alias).")
    candidates: int = Field(20, ge=1, le=100, description="Nearest entries per query the cross-encoder re-orders.")
    match_label: str | None = Field(None, description="The label that means the pair matches (default: the last "
                                    "of the model's labels).")


class SearchRequest(BaseModel):
    queries: list[QueryText] = Field(min_length=1, description="Query texts, not blank (the same limits as "
                                     "predict's texts).")
    k: int = Field(5, ge=1, le=100, description="Entries per query, best first.")
    min_score: float | None = Field(None, ge=-1, le=1, description="Leave out entries below this cosine "
                                    "similarity (an out-of-scope threshold for FAQ search).")
    rerank: Rerank | None = Field(None, description="Re-order the nearest candidates with a cross-encoder.")


def _index(path: str, name: str):
    from goldmine.retrieval.index import INDEX_FILE, Index
    from goldmine.serving.registry import NAME

    if not NAME.match(name):  # a name, never a path
        raise NotFound(f"no index {name!r} in this model version")
    directory = Path(path) / "indexes" / name
    if not (directory / INDEX_FILE).is_file():
        raise NotFound(f"no index {name!r} in this model version (build it with `goldmine index build` before "
                       "registering the model)")
    version = json.loads((directory / INDEX_FILE).read_text())["version"]
    key = (path, name, version)
    if key not in _LOADED:
        index = Index.load(directory)
        index.check_model(path)
        _LOADED[key] = index
        while len(_LOADED) > LOADED_INDEXES:
            _LOADED.popitem(last=False)
    _LOADED.move_to_end(key)
    return _LOADED[key]


@router.post("/{name}/indexes/{index}/search", responses=error_responses(401, 403, 404, 413, 422, 429, 503))
async def search(name: str, index: str, body: SearchRequest, request: Request, key: PredictKey,
                 services: ServicesDep,
                 version: str | None = Query(None, max_length=64, description="An alias or version id.")
                 ) -> JSONResponse:
    """The entries of the index nearest in meaning to each query, with their scores and payloads."""
    from dataclasses import asdict

    started = time.perf_counter()
    settings = services.settings
    limits = settings.limits
    if len(body.queries) > limits.max_items_per_call:
        raise PayloadTooLarge(f"{len(body.queries)} queries in one call; the limit is {limits.max_items_per_call}")
    for i, query in enumerate(body.queries):
        if len(query) > limits.max_chars_per_text:
            raise PayloadTooLarge(f"queries[{i}] has {len(query)} characters; the limit is "
                                  f"{limits.max_chars_per_text}")
        if not query.strip():
            raise InvalidRequest(f"queries[{i}] is empty")
    request.state.log = {**getattr(request.state, "log", {}), "model": name,
                         **describe_inputs(body.queries, settings.log_raw_inputs, None)}
    rate = await services.limiter.check_rate(key.id, key.rate or settings.default_rate)
    headers = rate.headers() if rate else {}
    resolved, path = await resolve_version(services, name, version or settings.default_alias, key.tenant)
    request.state.metrics_model = name
    searched = _index(path, index)
    reranker = None
    if body.rerank is not None:
        ranker_version, ranker_path = await resolve_version(services, body.rerank.model,
                                                            body.rerank.version or settings.default_alias, key.tenant)
    await services.limiter.reserve_quota(key.id, key.monthly_quota, len(body.queries))
    try:
        loaded = await services.pool.get(name, resolved, path)
        if body.rerank is not None:
            reranker = (await services.pool.get(body.rerank.model, ranker_version, ranker_path)).model

        def run():
            features = loaded.model.features(body.queries)
            counts = [len(f["input_ids"]) for f in features]
            if reranker is None:
                return searched.search(body.queries, body.k, model=loaded.model, min_score=body.min_score,
                                       features=features), counts
            pair_tokens: list[int] = []
            try:
                ranked = searched.search_and_rerank(body.queries, reranker, body.k, body.rerank.candidates,
                                                    body.rerank.match_label, model=loaded.model,
                                                    min_score=body.min_score, features=features,
                                                    tokens=pair_tokens)
            except InputError as err:
                raise InvalidRequest(str(err)) from None
            return ranked, counts + pair_tokens  # the cross-encoder's reading of each pair is billed too

        results, counts = await loaded.batcher.run_alone(run)
        tokens = sum(counts)
        await services.meter.record(Usage(
            request_id=request.state.request_id, tenant=key.tenant, key_id=key.id, model=name, version=resolved,
            items=len(body.queries), input_tokens=tokens,
            latency_ms=round((time.perf_counter() - started) * 1000, 3)))
    except BaseException:
        await services.limiter.release_quota(key.id, len(body.queries))
        raise
    services.metrics.tokens.labels(name).inc(tokens)
    content = {"request_id": request.state.request_id, "model": name, "version": resolved, "index": index,
               "index_version": searched.meta["version"],
               "results": [{"query": q, "hits": [asdict(h) for h in hits]}
                           for q, hits in zip(body.queries, results, strict=True)]}
    return JSONResponse(content, headers={**headers, "X-Model-Version": resolved})
