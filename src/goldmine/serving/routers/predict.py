"""`POST /v1/models/{name}/predict`: limits, idempotency, rate limit, quota, micro-batched inference, metering."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from goldmine.serving.deps import PredictKey, ServicesDep
from goldmine.serving.errors import InvalidRequest, PayloadTooLarge, error_responses
from goldmine.serving.feedback import answered_items
from goldmine.serving.masking import describe_inputs
from goldmine.serving.metering import Usage, request_hash
from goldmine.serving.registry import resolve
from goldmine.serving.settings import Limits

router = APIRouter(prefix="/v1/models", tags=["predict"])


LabelName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S")]


class PredictRequest(BaseModel):
    texts: list[str] = Field(min_length=1, description="Texts to label. Over the server's limits (maxItems, "
                             "maxLength: settings.limits) a call gets 413; text that is not Unicode (a lone "
                             "surrogate such as \"\\ud800\") gets 422.")
    texts_b: list[str] | None = Field(
        None, description="Pair models only (trained on text_a, text_b): the second text of each pair, exactly "
        "one per text (as many items as `texts`), under the same limits. A model that reads single texts refuses "
        "it, and a pair model refuses a call without it (422).")
    labels: list[LabelName] | None = Field(
        None, min_length=2, max_length=100, json_schema_extra={"uniqueItems": True},
        description="Zero-shot models only: choose among these 2 to 100 distinct label names instead of the "
        "model's own labels; billed as any call. Any other model refuses it (422).")


class PredictResponse(BaseModel):
    request_id: str
    model: str
    version: str = Field(description="The model version that answered (also in the X-Model-Version header).")
    predictions: list[dict[str, Any]] = Field(
        description="Per text: {label, score, scores} (classification) or {entities: [...]} (NER). A model with an "
        "out-of-scope rule adds out_of_scope (true: none of its labels fits; label is then the fallback label and "
        "closest_label the label it would have given).")


def document_limits(schema: dict, limits: Limits) -> None:
    """Write `limits` into an OpenAPI schema's PredictRequest (maxItems, maxLength of texts and texts_b): the
    model cannot hold them, they are settings. Beyond them a call gets 413, which the route declares."""
    properties = schema["components"]["schemas"]["PredictRequest"]["properties"]
    for name in ("texts", "texts_b"):
        for array in [properties[name], *properties[name].get("anyOf", [])]:
            if array.get("type") == "array":
                array["maxItems"] = limits.max_items_per_call
                array["items"]["maxLength"] = limits.max_chars_per_text


def _check_encodable(body: PredictRequest) -> None:
    """Refuse text that is not Unicode (a JSON `\\ud800` escape decodes to a lone surrogate, which the tokenizer
    cannot take) with a 422 that names the item, before it can reach a batch shared with other callers."""
    for field, texts in (("texts", body.texts), ("texts_b", body.texts_b or [])):
        for i, text in enumerate(texts):
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as err:
                    raise InvalidRequest(f"{field}[{i}] is not valid Unicode text (a lone surrogate at character "
                                         f"{err.start}): send UTF-8 text") from None


def _check_limits(body: PredictRequest, max_items: int, max_chars: int) -> None:
    if len(body.texts) > max_items:
        raise PayloadTooLarge(f"{len(body.texts)} texts in one call; the limit is {max_items}: split the call")
    if body.texts_b is not None and len(body.texts_b) != len(body.texts):
        raise InvalidRequest(f"{len(body.texts)} texts but {len(body.texts_b)} texts_b: give one per text")
    for field, texts in (("texts", body.texts), ("texts_b", body.texts_b or [])):
        for i, text in enumerate(texts):
            if len(text) > max_chars:
                raise PayloadTooLarge(f"{field}[{i}] has {len(text)} characters; the limit is {max_chars}")


def _resolve(services, name: str, ref: str, tenant: str) -> tuple[str, str]:
    with services.db.session() as session:
        row = resolve(session, name, ref, tenant)
        return row.version, row.path


async def resolve_version(services, name: str, ref: str, tenant: str) -> tuple[str, str]:
    """(version, path) of `ref`, from the database at most every `alias_cache_seconds` per (model, ref, tenant)."""
    return await services.versions.load((name, ref, tenant),
                                        lambda: asyncio.to_thread(_resolve, services, name, ref, tenant))


@router.post("/{name}/predict", response_model=PredictResponse,
             responses=error_responses(401, 403, 404, 409, 413, 422, 429, 503))
async def predict(
    name: str,
    body: PredictRequest,
    request: Request,
    key: PredictKey,
    services: ServicesDep,
    version: Annotated[str | None, Query(max_length=64, description="An alias or version id; default production.")]
    = None,
    idempotency_key: Annotated[str | None, Header(
        min_length=1, max_length=255, description="Retries with it never bill twice; its reply is kept for "
        "idempotency_ttl_seconds (default 24 h), after which the key may be used again.")] = None,
) -> JSONResponse:
    """Labels (classification) or entities (NER) for a batch of texts (or text pairs, for a pair model), from
    the version the alias points to."""
    started = time.perf_counter()
    settings, texts = services.settings, body.texts
    _check_encodable(body)  # before the log line and the batch: a lone surrogate breaks both
    request.state.log = {**getattr(request.state, "log", {}), "model": name,
                         **describe_inputs(texts, settings.log_raw_inputs, body.texts_b)}
    _check_limits(body, settings.limits.max_items_per_call, settings.limits.max_chars_per_text)
    items = list(zip(texts, body.texts_b, strict=True)) if body.texts_b is not None else texts
    ref = version or settings.default_alias
    fingerprint = request_hash(name, ref, items if body.labels is None else [items, body.labels]) \
        if idempotency_key else None
    if idempotency_key:
        replay = await asyncio.to_thread(services.meter.find, key.id, idempotency_key, fingerprint)
        if replay is not None:
            return _replayed(replay)
    rate = await services.limiter.check_rate(key.id, key.rate or settings.default_rate)
    headers = rate.headers() if rate else {}
    resolved_version, path = await resolve_version(services, name, ref, key.tenant)
    request.state.metrics_model = name  # a known model: safe as a metrics label (arbitrary path names are not)
    await services.limiter.reserve_quota(key.id, key.monthly_quota, len(texts))
    try:
        loaded = await services.pool.get(name, resolved_version, path)
        loaded.model.check_inputs(texts, body.texts_b)  # before queueing: a batch holds one kind of item
        if body.labels is None:
            results = await loaded.batcher.submit(items)
        else:  # its own labels: no forward pass to share with other calls
            results = await loaded.batcher.run_alone(
                lambda: loaded.model.predict_counted(texts, body.texts_b, body.labels))
        tokens = sum(count for _, count in results)
        request_id = request.state.request_id
        content = {"request_id": request_id, "model": name, "version": resolved_version,
                   "predictions": [prediction for prediction, _ in results]}
        replay = await services.meter.record(Usage(
            request_id=request_id, tenant=key.tenant, key_id=key.id, model=name, version=resolved_version,
            items=len(texts), input_tokens=tokens, latency_ms=round((time.perf_counter() - started) * 1000, 3),
            idempotency_key=idempotency_key, request_hash=fingerprint,
            response=content if idempotency_key else None,
            also=answered_items(settings, key.tenant, name, resolved_version, request_id, texts,
                                content["predictions"], body.texts_b is not None, body.labels is not None),
        ))
    except BaseException:
        await services.limiter.release_quota(key.id, len(texts))
        raise
    if replay is not None:  # an identical idempotent call was recorded first: answer as it did, bill once
        await services.limiter.release_quota(key.id, len(texts))
        return _replayed(replay)
    services.metrics.tokens.labels(name).inc(tokens)
    if body.labels is None and body.texts_b is None:  # its own labels, single texts: what monitoring compares
        services.drift.observe(key.tenant, name, resolved_version, path, loaded.model, texts, content["predictions"])
    return JSONResponse(content, headers={**headers, "X-Model-Version": resolved_version})


def _replayed(replay) -> JSONResponse:
    return JSONResponse(replay.body, headers={"X-Model-Version": replay.version, "Idempotent-Replayed": "true"})
