"""`POST /v1/embeddings` in the OpenAI API shape, for encoder models: the official `openai` client works against it.

`model` names a served model as `name` (its production alias) or `name@ref` (an alias or a version id). The
embedding is what the model's classification head reads (its pooled sentence embedding), scaled to unit length as
OpenAI's are, so a dot product is a cosine similarity. `encoding_format: base64` (the `openai` client's default)
carries the little-endian float32 bytes. The call goes through the same keys, tenants, limits, rate limits, quota
and metering as predict; it is billed by its input tokens.
"""

from __future__ import annotations

import base64
import time
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from goldmine.serving.deps import PredictKey, ServicesDep
from goldmine.serving.errors import InvalidRequest, PayloadTooLarge, error_responses
from goldmine.serving.masking import describe_inputs
from goldmine.serving.metering import Usage
from goldmine.serving.routers.predict import resolve_version

router = APIRouter(prefix="/v1", tags=["embeddings"])


InputText = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]


class EmbeddingsRequest(BaseModel):
    model: str = Field(min_length=1, max_length=200, description="A served model: 'name' or 'name@alias-or-version'.")
    input: InputText | Annotated[list[InputText], Field(min_length=1)] = Field(
        description="A text or a list of texts, not blank (token-id arrays are not accepted).")
    encoding_format: Literal["float", "base64"] = Field("float", description="float: lists of numbers; base64: "
                                                        "little-endian float32 bytes.")
    dimensions: int | None = Field(None, gt=0, description="Must equal the model's embedding size if given "
                                   "(goldmine does not shorten embeddings).")
    user: str | None = Field(None, max_length=256, description="Accepted for compatibility; not stored.")


def _texts(body: EmbeddingsRequest, max_items: int, max_chars: int) -> list[str]:
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts:
        raise InvalidRequest("input: give at least one text")
    if len(texts) > max_items:
        raise PayloadTooLarge(f"{len(texts)} texts in one call; the limit is {max_items}: split the call")
    for i, text in enumerate(texts):
        if not text.strip():
            raise InvalidRequest(f"input[{i}] is empty")
        if len(text) > max_chars:
            raise PayloadTooLarge(f"input[{i}] has {len(text)} characters; the limit is {max_chars}")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequest(f"input[{i}] is not valid Unicode text: send UTF-8 text") from None
    return texts


def embed_counted(model, texts: list[str]) -> tuple[np.ndarray, list[int]]:
    """Unit-length embeddings (N, H) of `texts` and each text's input tokens, from one tokenisation."""
    meta = model.meta
    if meta.task not in ("classification", "multilabel", "retrieval") or meta.members:
        raise InvalidRequest(f"embeddings come from a single classification encoder; this model is "
                             f"{'an ensemble' if meta.members else 'a ' + meta.task + ' model'}")
    if meta.pair:
        raise InvalidRequest("this model was trained on text pairs: its embedding of one text is not a sentence "
                             "embedding")
    features = model.features(texts)
    vectors = model.embed_features(features).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors, [len(f["input_ids"]) for f in features]


def _encoded(vector: np.ndarray, encoding: str):
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.post("/embeddings", responses=error_responses(401, 403, 404, 413, 422, 429, 503))
async def embeddings(body: EmbeddingsRequest, request: Request, key: PredictKey,
                     services: ServicesDep) -> JSONResponse:
    """Sentence embeddings of the texts from a served encoder model, in the OpenAI API shape."""
    started = time.perf_counter()
    settings = services.settings
    name, _, ref = body.model.partition("@")
    texts = _texts(body, settings.limits.max_items_per_call, settings.limits.max_chars_per_text)
    request.state.log = {**getattr(request.state, "log", {}), "model": name,
                         **describe_inputs(texts, settings.log_raw_inputs, None)}
    rate = await services.limiter.check_rate(key.id, key.rate or settings.default_rate)
    headers = rate.headers() if rate else {}
    version, path = await resolve_version(services, name, ref or settings.default_alias, key.tenant)
    request.state.metrics_model = name
    await services.limiter.reserve_quota(key.id, key.monthly_quota, len(texts))
    try:
        loaded = await services.pool.get(name, version, path)
        vectors, counts = await loaded.batcher.run_alone(lambda: embed_counted(loaded.model, texts))
        if body.dimensions is not None and body.dimensions != vectors.shape[1]:
            raise InvalidRequest(f"dimensions: this model's embeddings have {vectors.shape[1]}; goldmine does not "
                                 "shorten them")
        tokens = sum(counts)
        await services.meter.record(Usage(
            request_id=request.state.request_id, tenant=key.tenant, key_id=key.id, model=name, version=version,
            items=len(texts), input_tokens=tokens, latency_ms=round((time.perf_counter() - started) * 1000, 3)))
    except BaseException:
        await services.limiter.release_quota(key.id, len(texts))
        raise
    services.metrics.tokens.labels(name).inc(tokens)
    content = {"object": "list", "model": body.model,
               "data": [{"object": "embedding", "index": i, "embedding": _encoded(v, body.encoding_format)}
                        for i, v in enumerate(vectors)],
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return JSONResponse(content, headers={**headers, "X-Model-Version": version})
