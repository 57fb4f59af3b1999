"""The medical FAQ's configuration, in two layers:

- `MedFaqSettings`: what the FAQ does (when it answers, what it masks, what it says). It names no model, so a
  Python user with models already loaded (a test, a benchmark, a notebook) builds a `MedFaq` from it directly.
- `MedFaqConfig`: the app config (`app: medfaq`), one YAML file per tenant: the settings plus the models, named by
  serving-registry name and version or alias (never a path), so a customer swaps in a newly fine-tuned retriever by
  registering it and editing one line, or by promoting the alias the file names.

    app: medfaq
    tenant: clinic
    models:
      retriever: {name: medfaq-retriever, version: production, index: faq}   # the encoder and its FAQ index
      ner: {name: clinic-ner, version: production}                          # optional: names and places masked
      reranker: {name: medfaq-pairs, version: production}                   # optional: a cross-encoder
    threshold: 0.62
    urgent_rules: urgent_rules.yaml        # relative to this file; default: the shipped list

Every value is checked when the file is loaded (`goldmine.apps.base.load_app_config`: `file:line: field: message`);
the models are checked against the registry by `resolve_models`; the urgent rule file is checked when the FAQ is
built (`MedFaq.from_config`), with its own `file:line: reason`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from goldmine.apps.base import AppConfig, IndexRef, ModelRef
from goldmine.apps.medfaq.masking import PiiKind

DISCLAIMER = ("This answer is general information from a public health source, not medical advice, and it may not fit "
              "your situation. Always ask a doctor, nurse or pharmacist about your own health, and call your local "
              "emergency number in an emergency.")
HANDOFF_MESSAGE = ("I could not find an answer I am confident about in this FAQ. Please ask a clinician (your doctor, "
                   "nurse or pharmacist); if it is urgent, call your local emergency number.")


class MedFaqSettings(BaseModel):
    """How the FAQ answers, masks and hands off; every field has a default."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | Literal["auto"] = Field(
        "auto", description="Cosine similarity of the best match from which the FAQ answers (below: hand-off). "
        "'auto': the retriever's match threshold, fitted on its dev pairs when it was trained; a number calibrated "
        "on your questions (`calibrate_threshold`) is better.")
    rerank_threshold: float = Field(0.5, ge=0, le=1, description="The re-ranker's match probability from which the "
                                    "FAQ answers, when a re-ranker is configured.")
    rerank_candidates: int = Field(20, ge=1, le=200, description="Retrieved entries the re-ranker reads per question.")
    match_label: str | None = Field(None, description="The re-ranker's label of a matching pair (default: its last "
                                    "label, as '1' of 0/1).")
    top_k: int = Field(3, ge=1, le=50, description="Closest FAQ questions returned with each answer or hand-off.")
    ner_kinds: dict[str, PiiKind] = Field(default_factory=lambda: {"PER": PiiKind.NAME, "LOC": PiiKind.ADDRESS},
                                          description="NER entity type -> the kind it is masked as.")
    ner_min_score: float = Field(0.5, ge=0, le=1, description="NER entities below this score are not masked.")
    keep_focus_words: bool = Field(True, description="Never mask an NER entity made only of words of the FAQ's "
                                   "focus terms (medical eponyms such as Parkinson or Lyme).")
    focus_field: str = Field("focus", description="FAQ entry field naming its topic (keep_focus_words reads it).")
    answer_field: str = Field("answer", description="FAQ entry field holding the answer text.")
    url_field: str = Field("url", description="FAQ entry field holding the answer's source URL.")
    urgent_rules: Path | None = Field(None, description="YAML urgent rule list, checked before anything else "
                                      "(relative to the app config file); default: the shipped list "
                                      "(goldmine/apps/medfaq/urgent_rules.yaml).")
    max_question_chars: int = Field(2000, ge=10, le=10_000, description="Longer questions are refused.")
    max_questions: int = Field(16, ge=1, le=256, description="Questions in one call (a batch), at most; the "
                               "server's own per-call limit applies too.")
    disclaimer: str = Field(DISCLAIMER, min_length=1, description="Fixed text returned with every reply.")
    handoff_message: str = Field(HANDOFF_MESSAGE, min_length=1, description="What the asker is told when the best "
                                 "match is not confident enough.")

    @model_validator(mode="after")
    def _threshold_range(self) -> MedFaqSettings:
        if isinstance(self.threshold, float) and not -1 <= self.threshold <= 1:
            raise ValueError(f"threshold: a cosine similarity lies in [-1, 1], got {self.threshold}")
        return self

    def urgent_rules_file(self) -> Path | None:
        """The urgent rule file to load (None: the shipped list)."""
        return self.urgent_rules


class MedFaqModels(BaseModel):
    """The models the FAQ runs, by serving-registry name and version or alias."""

    model_config = ConfigDict(extra="forbid")

    retriever: IndexRef = Field(description="The sentence encoder that embeds questions (a `task: retrieval` run, "
                                "e.g. fine-tuned on medical_question_pairs) and the FAQ index built with that very "
                                "version (`goldmine app medfaq build-index` or `goldmine index build`).")
    ner: ModelRef | None = Field(None, description="An NER model (task ner) whose entities are masked beside the "
                                 "patterns (PER -> names, LOC -> addresses by default). Unset: patterns only, so bare "
                                 "names and town names stay in clear.")
    reranker: ModelRef | None = Field(None, description="A cross-encoder (a pair classification model) that "
                                      "re-orders the retrieved candidates; the answer decision then reads its "
                                      "probability against rerank_threshold.")


class MedFaqConfig(MedFaqSettings, AppConfig):
    """The medical FAQ's app config (`app: medfaq`): the settings plus the models."""

    app_name = "medfaq"

    models: MedFaqModels = Field(description="The retriever with its FAQ index, and the optional NER model and "
                                 "re-ranker.")

    def urgent_rules_file(self) -> Path | None:
        """The urgent rule file, a relative path taken from the config file's folder."""
        return self.path(self.urgent_rules) if self.urgent_rules is not None else None
