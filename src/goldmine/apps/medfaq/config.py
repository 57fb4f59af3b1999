"""The medical FAQ's configuration: which models and index it uses, when it answers and what it says.

Model fields take run directories. The app scaffolding's YAML names registry models (name and version) and resolves
them to these directories before building a `MedFaqConfig`, so this module knows nothing of the registry; a Python
user passes directories directly. Every field has a default except the retriever, and every value is checked when
the config is built (`MedFaqConfig.load` reports YAML errors as `file:line: field: message`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from goldmine.apps.medfaq.masking import PiiKind
from goldmine.apps.medfaq.yaml_files import load_yaml_model

DISCLAIMER = ("This answer is general information from a public health source, not medical advice, and it may not fit "
              "your situation. Always ask a doctor, nurse or pharmacist about your own health, and call your local "
              "emergency number in an emergency.")
HANDOFF_MESSAGE = ("I could not find an answer I am confident about in this FAQ. Please ask a clinician (your doctor, "
                   "nurse or pharmacist); if it is urgent, call your local emergency number.")


class MedFaqConfig(BaseModel):
    """Everything `MedFaq.load` needs. Paths are run or index directories."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retriever: Path = Field(description="Run directory of the sentence encoder that embeds questions (a goldmine "
                            "`task: retrieval` run, e.g. fine-tuned on medical_question_pairs); the index must have "
                            "been built with it.")
    index: Path | None = Field(None, description="Index directory of the FAQ (`build_index`); default "
                               "<retriever>/indexes/medfaq.")
    threshold: float | Literal["auto"] = Field(
        "auto", description="Cosine similarity of the best match from which the FAQ answers (below: hand-off). "
        "'auto': the retriever's match threshold, fitted on its dev pairs when it was trained; a number calibrated "
        "on your questions (`calibrate_threshold`) is better.")
    reranker: Path | None = Field(None, description="Optional run directory of a cross-encoder (a pair "
                                  "classification run) that re-orders the retrieved candidates; the answer decision "
                                  "then reads its probability against rerank_threshold.")
    rerank_threshold: float = Field(0.5, ge=0, le=1, description="The re-ranker's match probability from which the "
                                    "FAQ answers, when a re-ranker is configured.")
    rerank_candidates: int = Field(20, ge=1, le=200, description="Retrieved entries the re-ranker reads per question.")
    match_label: str | None = Field(None, description="The re-ranker's label of a matching pair (default: its last "
                                    "label, as '1' of 0/1).")
    top_k: int = Field(3, ge=1, le=50, description="Closest FAQ questions returned with each answer or hand-off.")
    ner: Path | None = Field(None, description="Optional goldmine NER run whose entities are masked beside the "
                             "patterns (PER -> names, LOC -> addresses by default); without one, bare names and "
                             "town names stay in clear.")
    ner_kinds: dict[str, PiiKind] = Field(default_factory=lambda: {"PER": PiiKind.NAME, "LOC": PiiKind.ADDRESS},
                                          description="NER entity type -> the kind it is masked as.")
    ner_min_score: float = Field(0.5, ge=0, le=1, description="NER entities below this score are not masked.")
    keep_focus_words: bool = Field(True, description="Never mask an NER entity made only of words of the FAQ's "
                                   "focus terms (medical eponyms such as Parkinson or Lyme).")
    focus_field: str = Field("focus", description="FAQ entry field naming its topic (keep_focus_words reads it).")
    answer_field: str = Field("answer", description="FAQ entry field holding the answer text.")
    url_field: str = Field("url", description="FAQ entry field holding the answer's source URL.")
    urgent_rules: Path | None = Field(None, description="YAML urgent rule list, checked before anything else; "
                                      "default: the shipped list (goldmine/apps/medfaq/urgent_rules.yaml).")
    max_question_chars: int = Field(2000, ge=10, le=10_000, description="Longer questions are refused.")
    disclaimer: str = Field(DISCLAIMER, min_length=1, description="Fixed text returned with every reply.")
    handoff_message: str = Field(HANDOFF_MESSAGE, min_length=1, description="What the asker is told when the best "
                                 "match is not confident enough.")

    @model_validator(mode="after")
    def _threshold_range(self) -> MedFaqConfig:
        if isinstance(self.threshold, float) and not -1 <= self.threshold <= 1:
            raise ValueError(f"threshold: a cosine similarity lies in [-1, 1], got {self.threshold}")
        return self

    @property
    def index_dir(self) -> Path:
        return self.index or self.retriever / "indexes" / "medfaq"

    @classmethod
    def load(cls, path: str | Path) -> MedFaqConfig:
        """A config from YAML; relative paths are taken from the file's folder."""
        config = load_yaml_model(path, cls, "medfaq config")
        base = Path(path).resolve().parent
        updates = {name: base / value for name in ("retriever", "index", "reranker", "ner", "urgent_rules")
                   if (value := getattr(config, name)) is not None and not value.is_absolute()}
        return config.model_copy(update=updates)
