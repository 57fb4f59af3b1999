"""One customer message -> intent, answer or hand-off, entities; the turn stored with personal data masked.

`respond` is the decision, a pure function of the message and what the models said, so the Python API
(`Assistant`, models loaded from the registry copies) and the HTTP router (models from the server's pool and its
micro-batchers) decide identically. The hand-off rules run in a fixed order, the customer's own words first:

1. the customer asks for a person (a `human_phrases` phrase)     -> asked_for_human
2. a complaint phrase (`complaint_phrases`)                       -> complaint
3. the intent model says out of scope (its rule, or an `out_of_scope_labels` label) -> out_of_scope
4. an intent of asking for a person (`human_intents`)             -> asked_for_human
5. a complaint intent (`complaint_intents`)                       -> complaint
6. the best intent's probability is below `threshold`             -> low_confidence
7. no answer of the intent in the response base or `answers`      -> no_answer

The answer is the response-base entry nearest to the message among those of the predicted intent (the index
returns `candidates` entries by cosine similarity; entries of other intents are skipped), so an answer is never
one written for another intent: the benchmark's answer accuracy checks exactly that.
"""

from __future__ import annotations

from pathlib import Path

from goldmine.apps.support import entities as ents
from goldmine.apps.support import store
from goldmine.apps.support.config import SupportConfig
from goldmine.errors import InputError
from goldmine.serving.db import Database

MAX_MESSAGE_CHARS = 2000
MAX_AGENT_CHARS = 128


def check_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> None:
    """An InputError for an empty message; a PayloadTooLarge for one over `limit` characters."""
    from goldmine.serving.errors import PayloadTooLarge

    if not isinstance(message, str) or not message.strip():
        raise InputError("message is empty")
    if len(message) > limit:
        raise PayloadTooLarge(f"message has {len(message)} characters; the limit is {limit}")


def pick_answer(config: SupportConfig, intent: str, hits: list) -> tuple[str | None, str | None]:
    """(answer, entry id) for `intent`: the first hit whose payload is of that intent, else `answers[intent]`."""
    for hit in hits:
        if str(hit.payload.get("intent")) == intent and hit.payload.get("answer"):
            return str(hit.payload["answer"]), hit.id
    if intent in config.answers:
        return config.answers[intent], None
    return None, None


def model_output(config: SupportConfig, field: str, prediction: dict, key: str):
    """`prediction[key]`, or a 503 naming the config field when the model there is of the wrong kind (an NER model
    as the intent model, a classifier as the NER model): the operator has to correct the config."""
    from goldmine.serving.errors import Unavailable

    if key not in prediction:
        kind = "an intent classifier" if key == "label" else "an NER model"
        raise Unavailable(f"app {config.app!r} is misconfigured for this tenant: {field}: model "
                          f"{config.model_refs()[field].name!r} is not {kind}")
    return prediction[key]


def respond(config: SupportConfig, message: str, prediction: dict, hits: list, ner: list[dict] | None) -> dict:
    """The assistant's reply to `message` (no conversation, no storage), given the intent model's `prediction`
    (`label`, `score`, optional `out_of_scope`/`closest_label`), the response-index `hits` and the NER model's
    entities (None without an NER model). Also returns `all_entities`: every personal entity found, for masking."""
    intent = str(model_output(config, "models.intent", prediction, "label"))
    score = float(prediction["score"])
    out_of_scope = bool(prediction.get("out_of_scope")) or intent in config.out_of_scope_labels
    found = ents.merge(ents.pattern_entities(message), ents.ner_entities(ner or [], config.ner_types))
    wanted = config.entity_types(intent) if not out_of_scope else set()
    reason = None
    if config.phrase_found(config.human_phrases, message):
        reason = "asked_for_human"
    elif config.phrase_found(config.complaint_phrases, message):
        reason = "complaint"
    elif out_of_scope:
        reason = "out_of_scope"
    elif intent in config.human_intents:
        reason = "asked_for_human"
    elif intent in config.complaint_intents:
        reason = "complaint"
    elif score < config.threshold:
        reason = "low_confidence"
    answer = answer_id = None
    if reason is None:
        answer, answer_id = pick_answer(config, intent, hits)
        if answer is None:
            reason = "no_answer"
    return {
        "intent": intent, "score": round(score, 6), "out_of_scope": out_of_scope, "answer": answer,
        "answer_id": answer_id,
        "entities": [e for e in found if e["type"] in wanted],
        "handoff": {"reason": reason, "message": config.handoff_messages[reason]} if reason else None,
        "all_entities": found,
    }


def save(db: Database, config: SupportConfig, conversation_id: str | None, message: str, reply: dict) -> dict:
    """Store the turn (message and answer masked) and return the public reply with conversation and turn ids."""
    found = reply.pop("all_entities")
    answer = reply["answer"]
    masked_answer = ents.mask_message(answer, ents.pattern_entities(answer)) if answer else None
    conversation_id, turn_id = store.record_turn(db, config.tenant, conversation_id,
                                                 ents.mask_message(message, found), reply, masked_answer)
    return {"conversation_id": conversation_id, "turn_id": turn_id, **reply}


def mark_wrong(db: Database, config: SupportConfig, turn_id: int, correct_intent: str | None = None,
               correct_answer: str | None = None, agent: str = "") -> dict:
    """Store an agent's correction of a turn: the right intent and/or answer (at least one), masked like turns."""
    if not (correct_intent or "").strip() and not (correct_answer or "").strip():
        raise InputError("give correct_intent or correct_answer (or both)")
    if not agent.strip() or len(agent) > MAX_AGENT_CHARS:
        raise InputError(f"agent: name who corrects (1 to {MAX_AGENT_CHARS} characters)")
    if correct_intent is not None and len(correct_intent) > 128:
        raise InputError("correct_intent: at most 128 characters")
    if correct_answer is not None:
        check_message(correct_answer, 10 * MAX_MESSAGE_CHARS)
    masked = ents.mask_message(correct_answer, ents.pattern_entities(correct_answer)) if correct_answer else None
    correction_id = store.record_correction(db, config.tenant, turn_id, correct_intent or None, masked, agent)
    return {"correction_id": correction_id, "turn_id": turn_id}


class Assistant:
    """The assistant as a Python object: `Assistant.from_config(config, db).handle(None, "where is my order?")`.

    Models are loaded from their registry copies (`resolve_models`), once; the index is searched with the model it
    was built with."""

    def __init__(self, config: SupportConfig, db: Database, intent_model, index=None, index_model=None,
                 ner_model=None):
        self.config, self.db = config, db
        self.intent_model, self.index, self.index_model, self.ner_model = intent_model, index, index_model, ner_model

    @classmethod
    def from_config(cls, config: SupportConfig, db: Database) -> Assistant:
        from goldmine.apps.base import load_models

        resolved, models = load_models(config, db)  # ConfigError naming the config line for a missing version
        index = None
        if config.models.responses is not None:
            index = load_index(resolved["models.responses"].path, config.models.responses.index)
        return cls(config, db, models["models.intent"], index, models.get("models.responses"),
                   models.get("models.ner"))

    def handle(self, conversation_id: str | None, message: str) -> dict:
        """`{conversation_id, turn_id, intent, score, out_of_scope, answer, answer_id, entities, handoff}`."""
        check_message(message)
        store.check_conversation(self.db, self.config.tenant, conversation_id)
        prediction = self.intent_model.predict([message])[0]
        hits = self.index.search([message], min(self.config.candidates, len(self.index.entries)),
                                 model=self.index_model)[0] if self.index is not None else []
        ner = model_output(self.config, "models.ner", self.ner_model.predict([message])[0], "entities") \
            if self.ner_model is not None else None
        return save(self.db, self.config, conversation_id, message, respond(self.config, message, prediction, hits,
                                                                            ner))

    def mark_wrong(self, turn_id: int, correct_intent: str | None = None, correct_answer: str | None = None,
                   agent: str = "") -> dict:
        return mark_wrong(self.db, self.config, turn_id, correct_intent, correct_answer, agent)

    def conversation(self, conversation_id: str) -> dict:
        return store.conversation(self.db, self.config.tenant, conversation_id)


def load_index(model_path: str | Path, name: str):
    """The index `name` of a registered model version (`<version>/indexes/<name>`), checked against its model."""
    from goldmine.retrieval.index import INDEXES_DIR, Index, IndexUnusable
    from goldmine.serving.errors import Unavailable

    directory = Path(model_path) / INDEXES_DIR / name
    try:
        index = Index.load(directory)
        index.check_model(model_path)
    except IndexUnusable as err:
        raise Unavailable(f"support response index: {err} (build it with `goldmine index build` before "
                          "registering the model)") from None
    return index
