"""`/v1/apps/medfaq/...`: the medical FAQ over HTTP, behind the scaffolding's keys, tenants, limits and metering.

    POST /v1/apps/medfaq/ask   {"question": "..."}        -> one reply
                               {"questions": ["...", ...]} -> {"replies": [...]}   (one billed item per question)

The retriever, NER model and re-ranker come from the server's pool. A call runs whole on one worker of the
retriever's micro-batcher (`run_alone`): masking, urgent rules, search and re-ranking read each other's output, so
they cannot share a forward pass with other calls, and taking a worker keeps the cores shared with the model routes.
The `MedFaq` built over the pooled models (its index loaded and checked against the retriever's weights, its rule
file read) is kept for the next call until a model version changes or the index is rebuilt.

Privacy. Personal data in a question is masked before any model reads it (`MedFaq.answer_many`), and the clear
question goes nowhere but there: the request log line gets counts, lengths and the kinds masked; the usage record
gets the app, model, items and tokens (no reply: this route takes no idempotency key); every error message names a
position and a length, never text; validation errors never echo input (`serving.app`). The reply holds the masked
question, so the caller can see what the FAQ read.

A config that names a model version the registry lacks, an index built with another model, or an urgent rule file
with a bad rule is a 503 naming the field (the server's log has the file and line), not a failed search.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from pathlib import Path

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from goldmine.apps.http import Billed, app_model, check_texts, config_for, metered_call
from goldmine.apps.medfaq.config import MedFaqConfig
from goldmine.apps.medfaq.faq import MedFaq, MedFaqAnswer, load_faq_index
from goldmine.apps.medfaq.masking import without_placeholders
from goldmine.apps.medfaq.urgent import UrgentRules
from goldmine.errors import ConfigError
from goldmine.retrieval.index import INDEX_FILE, INDEXES_DIR
from goldmine.serving.deps import PredictKey, ServicesDep
from goldmine.serving.errors import PayloadTooLarge, Unavailable, error_responses

log = logging.getLogger(__name__)
APP = "medfaq"
router = APIRouter(prefix=f"/v1/apps/{APP}", tags=["apps: medfaq"])
_FAQS: OrderedDict[tuple, MedFaq] = OrderedDict()  # (config, loaded models, index stamp) -> MedFaq
LOADED_FAQS = 8


class AskIn(BaseModel):
    """Exactly one of `question` and `questions` (the schema says so too, so that clients and fuzzers know)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [{"required": ["question"]},
                                                                           {"required": ["questions"]}]})

    question: str | SkipJsonSchema[None] = Field(None, description="One question; the reply is its answer or "
                                                 "hand-off.")
    questions: list[str] | SkipJsonSchema[None] = Field(
        None, json_schema_extra={"minItems": 1}, description="A small batch of questions (at most the app config's "
        "max_questions); the reply is {replies: [...]}, in order.")  # an empty list: check_texts says so

    @model_validator(mode="after")
    def _one_of(self) -> AskIn:
        if (self.question is None) == (self.questions is None):
            raise ValueError("give either question (one) or questions (a batch)")
        return self


class AskOut(MedFaqAnswer):
    request_id: str


class AskManyOut(BaseModel):
    request_id: str
    replies: list[MedFaqAnswer]


def check_questions(questions: list[str], config: MedFaqConfig, limits, where: str) -> None:
    """The server's limits (`check_texts`: blank, too long, not Unicode, too many) and the FAQ's own: at most
    `max_questions` per call and `max_question_chars` each (413). Messages name positions and lengths, never text."""
    if len(questions) > config.max_questions:
        raise PayloadTooLarge(f"{len(questions)} questions in one call; this FAQ takes at most "
                              f"{config.max_questions}: split the call")
    check_texts(questions, where, limits)
    for i, question in enumerate(questions):
        if len(question) > config.max_question_chars:
            raise PayloadTooLarge(f"{where.format(i)} has {len(question)} characters; the limit is "
                                  f"{config.max_question_chars}: ask one question at a time, in short")


def _index_stamp(version_dir: str, name: str) -> int:
    """Changes when the index is rebuilt (`build-index` replaces it whole), so a cached FAQ is rebuilt too."""
    try:
        return os.stat(Path(version_dir) / INDEXES_DIR / name / INDEX_FILE).st_mtime_ns
    except OSError:
        return 0


def _public(err: ConfigError, config: MedFaqConfig) -> str:
    """A config problem as a tenant may read it: file names relative to the config's folder, no server paths."""
    return str(err).replace(f"{Path(config.source).parent}/", "")


async def _faq(services, config: MedFaqConfig):
    """The FAQ over the pooled models of `config`, and the loaded retriever (whose worker runs the call)."""
    from goldmine.serving.routers.predict import resolve_version

    retriever = await app_model(services, config, "models.retriever")
    ner = await app_model(services, config, "models.ner") if config.models.ner is not None else None
    reranker = await app_model(services, config, "models.reranker") if config.models.reranker is not None else None
    ref = config.models.retriever
    _, version_dir = await resolve_version(services, ref.name, ref.version, config.tenant)
    key = (id(config), id(retriever.model), ner and id(ner.model), reranker and id(reranker.model),
           _index_stamp(version_dir, ref.index))
    if key in _FAQS:
        _FAQS.move_to_end(key)
        return _FAQS[key], retriever

    def build() -> MedFaq:
        index = load_faq_index(config, retriever.version, version_dir)
        rules = UrgentRules.load(config.urgent_rules_file())
        return MedFaq.checked(config, retriever.model, index, reranker and reranker.model, ner and ner.model, rules)

    try:
        faq = await asyncio.to_thread(build)
    except ConfigError as err:
        log.error("%s", err)
        raise Unavailable(f"app {APP!r} is misconfigured for this tenant: {_public(err, config)}") from None
    _FAQS[key] = faq
    while len(_FAQS) > LOADED_FAQS:
        _FAQS.popitem(last=False)
    return faq, retriever


def _answer(faq: MedFaq, questions: list[str]) -> tuple[list[MedFaqAnswer], int]:
    """The replies, and the input tokens the retriever read (the masked questions it searched with)."""
    replies = faq.answer_many(questions)
    searched = [text for r in replies if r.matches and (text := without_placeholders(r.masked_question))]
    tokens = sum(len(f["input_ids"]) for f in faq.retriever.features(searched)) if searched else 0
    return replies, tokens


@router.post("/ask", response_model=AskOut | AskManyOut,
             responses=error_responses(401, 403, 404, 413, 422, 429, 503))
async def ask(body: AskIn, request: Request, key: PredictKey, services: ServicesDep):
    """Answer a patient's question from the FAQ (the answer, its source URL and the disclaimer), or hand it to a
    person with the reason (urgent, low_confidence). Personal data is masked before anything reads the question."""
    config = config_for(services, APP, key.tenant)
    single = body.question is not None
    questions = [body.question] if single else body.questions
    check_questions(questions, config, services.settings.limits, "question" if single else "questions[{}]")

    async def run():
        faq, retriever = await _faq(services, config)
        replies, tokens = await retriever.batcher.run_alone(lambda: _answer(faq, questions))
        masked: dict[str, int] = {}
        for reply in replies:
            for kind in reply.masked_kinds:
                masked[kind.value] = masked.get(kind.value, 0) + 1
        request.state.log.update({"chars": [len(q) for q in questions], "masked": masked,
                                  "outcomes": [r.handoff.reason if r.handoff else "answered" for r in replies]})
        dumped = [r.model_dump(mode="json") for r in replies]
        return (dumped[0] if single else {"replies": dumped}), Billed(retriever.name, retriever.version, tokens)

    return await metered_call(request, key, services, APP, len(questions), run)
