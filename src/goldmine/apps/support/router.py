"""`/v1/apps/support/...`: the assistant over HTTP, behind the scaffolding's keys, tenants, limits and metering.

    POST /v1/apps/support/messages                    {conversation_id?, message} -> the reply (one billed item)
    POST /v1/apps/support/turns/{turn_id}/correction  {correct_intent?, correct_answer?, agent} -> stored
    GET  /v1/apps/support/conversations/{id}          the conversation as stored (masked)

Models come from the server's pool, so the intent and NER models share the micro-batchers of the model routes;
the index search runs on its model's batcher alone, as `/v1/models/{name}/indexes/{index}/search` does. The
decision and the storage are `assistant.respond` and `assistant.save`, the very functions the Python API calls.
A conversation id the tenant does not have is a 404 before anything is run or billed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from goldmine.apps.http import Billed, app_model, check_texts, config_for, metered_call
from goldmine.apps.support import assistant, store
from goldmine.apps.support.config import SupportConfig
from goldmine.serving.deps import PredictKey, ServicesDep
from goldmine.serving.errors import error_responses

APP = "support"
router = APIRouter(prefix=f"/v1/apps/{APP}", tags=["apps: support"])
_INDEXES: OrderedDict[tuple[str, str], object] = OrderedDict()  # (version path, index name) -> Index
LOADED_INDEXES = 8


class MessageIn(BaseModel):
    conversation_id: str | None = Field(None, max_length=64, description="The conversation to continue; leave out "
                                        "to start one (the reply carries its id).")
    message: str = Field(description="The customer's message.")


class Entity(BaseModel):
    type: str = Field(description="order_number | amount | date | email | phone | name")
    text: str
    start: int
    end: int


class Handoff(BaseModel):
    reason: str = Field(description="asked_for_human | complaint | out_of_scope | low_confidence | no_answer")
    message: str = Field(description="What to tell the customer.")


class MessageOut(BaseModel):
    request_id: str
    conversation_id: str
    turn_id: int = Field(description="Give it to the correction route to mark this reply wrong.")
    intent: str
    score: float
    out_of_scope: bool
    answer: str | None
    answer_id: str | None = Field(description="The response-base entry answered with (None: a fixed answer).")
    entities: list[Entity]
    handoff: Handoff | None


class CorrectionIn(BaseModel):
    correct_intent: str | None = Field(None, max_length=128, description="The intent the message really had.")
    correct_answer: str | None = Field(None, description="The answer that should have been given.")
    agent: str = Field(min_length=1, max_length=128, description="Who corrects (an agent's name or id).")


def _index(path: str, name: str):
    key = (path, name)
    if key in _INDEXES:
        _INDEXES.move_to_end(key)
    else:
        _INDEXES[key] = assistant.load_index(path, name)
        while len(_INDEXES) > LOADED_INDEXES:
            _INDEXES.popitem(last=False)
    return _INDEXES[key]


async def _hits(services, config: SupportConfig, message: str) -> tuple[list, int]:
    """The response-index entries nearest to `message` (and the tokens its model read), or ([], 0) without one."""
    from goldmine.serving.routers.predict import resolve_version

    ref = config.models.responses
    if ref is None:
        return [], 0
    loaded = await app_model(services, config, "models.responses")
    _, path = await resolve_version(services, ref.name, ref.version, config.tenant)
    index = await asyncio.to_thread(_index, path, ref.index)

    def run():
        features = loaded.model.features([message])
        hits = index.search([message], min(config.candidates, len(index.entries)), model=loaded.model,
                            features=features)[0]
        return hits, len(features[0]["input_ids"])

    return await loaded.batcher.run_alone(run)


@router.post("/messages", response_model=MessageOut, responses=error_responses(401, 403, 404, 413, 422, 429, 503))
async def message(body: MessageIn, request: Request, key: PredictKey, services: ServicesDep):
    """Answer a customer's message, or hand the conversation to a person with the reason."""
    config = config_for(services, APP, key.tenant)
    check_texts([body.message], "message", services.settings.limits)
    await asyncio.to_thread(store.check_conversation, services.db, key.tenant, body.conversation_id)

    async def run():
        intent = await app_model(services, config, "models.intent")
        [(prediction, tokens)] = await intent.batcher.submit([body.message])
        hits, index_tokens = await _hits(services, config, body.message)
        ner = None
        if config.models.ner is not None:
            [(found, ner_tokens)] = await (await app_model(services, config, "models.ner")).batcher.submit(
                [body.message])
            ner, tokens = assistant.model_output(config, "models.ner", found, "entities"), tokens + ner_tokens
        reply = assistant.respond(config, body.message, prediction, hits, ner)
        out = await asyncio.to_thread(assistant.save, services.db, config, body.conversation_id, body.message, reply)
        return out, Billed(intent.name, intent.version, tokens + index_tokens)

    return await metered_call(request, key, services, APP, 1, run)


@router.post("/turns/{turn_id}/correction", responses=error_responses(401, 403, 404, 422, 429))
async def correction(turn_id: int, body: CorrectionIn, request: Request, key: PredictKey, services: ServicesDep):
    """Mark a reply wrong: the right intent and/or answer, stored as a labeled correction for the feedback loop."""
    config = config_for(services, APP, key.tenant)

    async def run():
        return await asyncio.to_thread(assistant.mark_wrong, services.db, config, turn_id, body.correct_intent,
                                       body.correct_answer, body.agent), Billed()

    return await metered_call(request, key, services, APP, 0, run)


@router.get("/conversations/{conversation_id}", responses=error_responses(401, 403, 404, 429))
async def conversation(conversation_id: str, request: Request, key: PredictKey, services: ServicesDep):
    """A conversation as stored: its turns (messages masked), replies, hand-offs and corrections."""
    config_for(services, APP, key.tenant)

    async def run():
        return await asyncio.to_thread(store.conversation, services.db, key.tenant, conversation_id), Billed()

    return await metered_call(request, key, services, APP, 0, run)
