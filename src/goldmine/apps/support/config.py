"""The support assistant's config: which models it runs, when it hands a conversation to a person, and which
entities each intent needs. One YAML file per tenant (through `goldmine.apps.base`), so a customer swaps in their
own intent model, response base or rules by editing lines, not code.

    app: support
    tenant: acme
    models:
      intent: {name: support-intents, version: production}
      responses: {name: support-intents, version: production, index: responses}   # optional
      ner: {name: support-ner, version: production}                               # optional
    threshold: 0.5
    complaint_intents: [delivery_delay_complaint]

The rule lists have defaults a customer edits (or empties); the phrase lists are matched case-insensitively as
whole words, before the model is asked anything, because a customer who writes "let me talk to a human" should be
handed over whatever the intent model thinks.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from goldmine.apps.base import AppConfig, IndexRef, ModelRef

EntityType = Literal["order_number", "amount", "date", "email", "phone", "name"]
HandoffReason = Literal["asked_for_human", "complaint", "out_of_scope", "low_confidence", "no_answer"]

HUMAN_PHRASES = ["human", "real person", "a person", "an agent", "live agent", "representative", "talk to someone",
                 "speak to someone", "customer service agent", "operator", "call me back"]
COMPLAINT_PHRASES = ["complaint", "complain", "unacceptable", "ridiculous", "disgusting", "terrible service",
                     "worst service", "i am furious", "i'm furious", "rip-off", "scam", "lawyer", "legal action"]
COMPLAINT_INTENTS = ["complaint", "delivery_delay_complaint"]
HUMAN_INTENTS = ["talk_to_human", "contact_human_agent"]
ENTITY_INTENTS: dict[str, list[EntityType]] = {
    "track_order": ["order_number", "date"],
    "cancel_order": ["order_number", "date"],
    "delivery_delay_complaint": ["order_number", "date"],
    "refund_request": ["order_number", "amount", "date"],
    "payment_failed": ["amount", "date"],
    "update_email": ["email"],
    "change_address": ["order_number", "name"],
    "talk_to_human": ["name", "phone", "email"],
}
HANDOFF_MESSAGES: dict[HandoffReason, str] = {
    "asked_for_human": "Of course, I am passing you to a colleague now.",
    "complaint": "I am sorry about this. A colleague will take over your case right away.",
    "out_of_scope": "I am not able to help with that here; a colleague will get back to you.",
    "low_confidence": "I want to be sure I understand you correctly, so a colleague will take over.",
    "no_answer": "I do not have an answer for that yet; a colleague will take over.",
}


class SupportModels(BaseModel):
    """The models the assistant runs, by serving-registry name and version or alias."""

    model_config = ConfigDict(extra="forbid")

    intent: ModelRef = Field(description="The intent classifier (task classification); its out-of-scope rule, if "
                             "it was trained with one, decides out_of_scope.")
    responses: IndexRef | None = Field(None, description="A search index over the response base (`goldmine index "
                                       "build`): entries whose payload holds `intent` and `answer`. Unset: answers "
                                       "come from `answers` only.")
    ner: ModelRef | None = Field(None, description="An NER model (task ner) whose entities add names (and any "
                                 "type in `ner_types`) to the pattern matches. Unset: patterns only.")


class SupportConfig(AppConfig):
    """The customer-service assistant's config (`app: support`)."""

    app_name = "support"

    models: SupportModels = Field(description="The models and index the assistant uses.")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Hand off (reason low_confidence) when the intent "
                             "model's probability for its best intent is below this.")
    out_of_scope_labels: list[str] = Field(["oos", "out_of_scope"], description="Intent labels that mean out of "
                                           "scope (a model trained with such a class, e.g. clinc150's oos), besides "
                                           "the model's own out-of-scope rule.")
    complaint_intents: list[str] = Field(COMPLAINT_INTENTS, description="Intents that are complaints: handed "
                                         "off (reason complaint).")
    complaint_phrases: list[str] = Field(COMPLAINT_PHRASES, description="Phrases that make a message a complaint "
                                         "whatever its intent (case-insensitive, whole words).")
    human_intents: list[str] = Field(HUMAN_INTENTS, description="Intents that mean the customer asks for a person: "
                                     "handed off (reason asked_for_human).")
    human_phrases: list[str] = Field(HUMAN_PHRASES, description="Phrases that mean the customer asks for a person; "
                                     "checked first (case-insensitive, whole words).")
    handoff_messages: dict[HandoffReason, str] = Field(HANDOFF_MESSAGES, description="What the customer is told "
                                                       "for each hand-off reason (reasons left out keep theirs).")
    answers: dict[str, str] = Field(default_factory=dict, description="A fixed answer per intent, used when no "
                                    "response index is set or it has no entry of the intent.")
    candidates: int = Field(20, ge=1, le=200, description="Entries read from the response index per message; the "
                            "best one of the predicted intent is the answer.")
    entity_intents: dict[str, list[EntityType]] = Field(ENTITY_INTENTS, description="Which entity types each intent "
                                                        "needs; `*` applies to every intent. Other intents get "
                                                        "no entities.")
    ner_types: dict[str, EntityType] = Field({"PER": "name"}, description="NER model entity types -> the "
                                             "assistant's types; other NER types are ignored.")

    @field_validator("handoff_messages")
    @classmethod
    def _keep_default_messages(cls, value: dict) -> dict:
        return {**HANDOFF_MESSAGES, **value}

    @field_validator("complaint_phrases", "human_phrases")
    @classmethod
    def _no_blank_phrases(cls, value: list[str]) -> list[str]:
        if any(not phrase.strip() for phrase in value):
            raise ValueError("a phrase is empty")
        return [phrase.strip().lower() for phrase in value]

    def phrase_found(self, phrases: list[str], message: str) -> str | None:
        """The first of `phrases` in `message` as whole words (case-insensitive), or None."""
        lowered = message.lower()
        for phrase in phrases:
            if re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", lowered):
                return phrase
        return None

    def entity_types(self, intent: str) -> set[str]:
        return set(self.entity_intents.get(intent, [])) | set(self.entity_intents.get("*", []))
