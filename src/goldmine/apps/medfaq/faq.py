"""The medical FAQ: a patient's question in, an answer from the FAQ with its source and a disclaimer out, or a
hand-off to a person.

    question -> checks (empty, too long) -> urgent rules -> PII masking -> search (masked text) -> [re-rank]
             -> best match confident? answer : hand-off

The order is the product: the urgent rules run before any model (a crisis is never answered from a FAQ); personal
data is masked before the question reaches the search model, so what a model, a log line or a returned field holds
is the masked text; and a match below the threshold is handed off rather than answered, since a wrong medical
answer costs more than no answer.

The answer decision reads one number against one threshold. Without a re-ranker it is the cosine similarity of the
best FAQ question (`threshold`, which defaults to the retriever's own match threshold fitted on its dev pairs;
`calibrate_threshold` fits one on questions whose right entry is known, including questions the FAQ cannot
answer). With a re-ranker it is the cross-encoder's match probability of the re-ranked best question
(`rerank_threshold`).

Nothing is stored. Log lines carry the decision, the matched entry id, the score and the kinds masked, never text.
"""

from __future__ import annotations

import csv
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from goldmine.apps.medfaq.config import MedFaqConfig, MedFaqSettings
from goldmine.apps.medfaq.masking import PiiKind, PiiMasker, without_placeholders
from goldmine.apps.medfaq.urgent import UrgentRules
from goldmine.data.readers import decoded_text, jsonl_records
from goldmine.errors import ConfigError, DataError, DataIssue, InputError
from goldmine.retrieval.index import INDEXES_DIR, Entry, Hit, Index, IndexUnusable

log = logging.getLogger(__name__)
FAQ_FIELDS = ("question", "answer")  # an entry needs both; url, focus and anything else are kept as its payload


# ---------------------------------------------------------------- what a reply looks like
class Handoff(BaseModel):
    """Why the FAQ does not answer, and what the asker is told instead."""

    reason: Literal["urgent", "low_confidence"] = Field(description="urgent: an urgent rule fired; low_confidence: "
                                                        "no FAQ question is close enough.")
    message: str = Field(description="What to tell the asker (the rule's message, or the hand-off message).")
    rule: str | None = Field(None, description="The urgent rule that fired, when reason is urgent.")


class Match(BaseModel):
    """One of the closest FAQ questions."""

    id: str
    question: str
    score: float = Field(description="Cosine similarity of the (masked) question and this FAQ question.")
    rerank_score: float | None = Field(None, description="The re-ranker's match probability, when re-ranked.")
    url: str | None = None
    focus: str | None = None


class MedFaqAnswer(BaseModel):
    """The reply to one question: an answer, or a hand-off (then `answer` and `url` are None)."""

    masked_question: str = Field(description="The question as the FAQ read it: personal data replaced by "
                                 "placeholders such as <NAME>.")
    masked_kinds: list[PiiKind] = Field(description="Kinds of personal data that were masked (never the values).")
    answer: str | None = Field(description="The matched FAQ entry's answer, or None on a hand-off.")
    url: str | None = Field(description="The answer's source URL, when the FAQ entry has one.")
    entry_id: str | None = Field(description="Id of the FAQ entry answered with (for feedback), or None.")
    disclaimer: str = Field(description="Fixed text returned with every reply.")
    score: float | None = Field(description="What the decision read: the best match's cosine similarity, or its "
                                "re-ranker probability; None when no search ran (urgent).")
    threshold: float | None = Field(description="The score from which the FAQ answers.")
    matches: list[Match] = Field(description="The closest FAQ questions, best first (empty when urgent).")
    handoff: Handoff | None = Field(description="Set when the question goes to a person instead.")


# ---------------------------------------------------------------- the FAQ file and its index
def read_faq(path: str | Path, id_field: str = "id") -> list[Entry]:
    """FAQ entries of a JSONL or CSV/TSV file with `question` and `answer` fields (url, focus and any other field
    kept as the payload); every bad line in one `DataError`: no question, no answer, a duplicate id."""
    path = Path(path)
    if not path.is_file():
        raise DataError([DataIssue(str(path), 0, "file not found")], header="cannot read the FAQ")
    content = decoded_text(path, "cannot read the FAQ")
    issues: list[DataIssue] = []
    if path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(content.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        records = [(number, dict(row)) for number, row in enumerate(reader, start=2)]
    else:
        records = jsonl_records(path, issues, content.splitlines())
    entries, first_line = [], {}
    for number, record in records:
        if missing := [f for f in FAQ_FIELDS if not isinstance(record.get(f), str) or not record[f].strip()]:
            issues.append(DataIssue(str(path), number, f"no text in field(s) {', '.join(missing)}"))
            continue
        entry_id = str(record[id_field]) if record.get(id_field) not in (None, "") else str(number)
        if entry_id in first_line:
            issues.append(DataIssue(str(path), number, f"id {entry_id!r} already used on line {first_line[entry_id]}"))
            continue
        first_line[entry_id] = number
        payload = {k: v for k, v in record.items() if k not in ("question", id_field)}
        entries.append(Entry(entry_id, record["question"], payload))
    if issues:
        raise DataError(sorted(issues, key=lambda i: i.line), header=f"{path}: FAQ entries that cannot be used")
    if not entries:
        raise DataError([DataIssue(str(path), 1, "the FAQ is empty")], header="cannot build a FAQ index")
    return entries


def build_index(retriever: str | Path, faq: str | Path | list[Entry], name: str = "medfaq",
                out: str | Path | None = None, model=None) -> Index:
    """Embed the FAQ's questions with the retriever and save the index (default `<retriever>/indexes/<name>/`,
    where `MedFaq.from_runs` looks by default). `faq`: a file (`read_faq`) or entries. `model`: the retriever,
    already loaded. For a registered retriever, `build_registered_index` builds the index its app config names."""
    entries = faq if isinstance(faq, list) else read_faq(faq)
    if bad := [e.id for e in entries if not isinstance(e.payload.get("answer"), str) or not e.payload["answer"]]:
        raise InputError(f"FAQ entries without an answer: {bad[:10]}")
    return Index.build(retriever, entries, name, out=out, model=model)


@dataclass(frozen=True)
class ThresholdFit:
    """A threshold fitted on questions whose right FAQ entry is known (or known to be absent)."""

    threshold: float
    accuracy: float  # share of questions decided right: answered with a right entry, or handed off otherwise
    questions: int
    answerable: int  # questions whose best match is a right entry


def calibrate_threshold(scores: list[float], correct: list[bool]) -> ThresholdFit:
    """The score from which to answer, from each calibration question's best-match score and whether that match
    is a right entry (always False for a question the FAQ cannot answer): the threshold that decides most
    questions right (answer when right, hand off when wrong), as `goldmine.tasks.retrieval.match_threshold` fits a
    pair threshold."""
    from goldmine.tasks.retrieval import match_threshold

    if not scores or len(scores) != len(correct):
        raise InputError(f"calibrate_threshold: give one score per question and one verdict per score "
                         f"({len(scores)} scores, {len(correct)} verdicts)")
    values, right = np.asarray(scores, dtype=float), np.asarray(correct, dtype=bool)
    threshold = match_threshold(values, right)
    accuracy = float(((values >= threshold) == right).mean())
    return ThresholdFit(round(threshold, 6), accuracy, len(scores), int(right.sum()))


# ---------------------------------------------------------------- the app
class MedFaq:
    """Answer patients' questions from a FAQ, with privacy and hand-offs: `faq.answer(question)`.

    Three ways to build one, all ending in the constructor:

    - `MedFaq.from_config(load_app_config("medfaq.yaml"), db)`: the app config's registered models and index (what
      `goldmine app medfaq ask` does);
    - `MedFaq.from_runs(MedFaqSettings(threshold=0.6), "runs/retriever", ner="runs/ner")`: run directories not
      registered anywhere (benchmarks, notebooks);
    - `MedFaq(settings, retriever, index, ...)`: models already loaded (what the server does with its pool, and
      tests).

    Args:
        settings: a `MedFaqSettings` (a `MedFaqConfig` is one).
        retriever: the loaded sentence encoder; index: the FAQ index built with it.
        reranker, ner: loaded optional models. rules: the urgent rules (default: `settings`' file).
        retriever_dir: the retriever's directory, to check that the index was built with it (its weights are
            hashed: a tenth of a second). None when the caller checked it already (`load_faq_index` does).
    """

    def __init__(self, settings: MedFaqSettings, retriever, index: Index, reranker=None, ner=None,
                 rules: UrgentRules | None = None, retriever_dir: str | Path | None = None):
        if retriever_dir is not None:
            index.check_model(retriever_dir)
        self.config, self.retriever, self.index, self.reranker = settings, retriever, index, reranker
        self.rules = rules if rules is not None else UrgentRules.load(settings.urgent_rules_file())
        if reranker is not None and not reranker.meta.pair:
            raise ConfigError("models.reranker: a re-ranker is a pair classification run (a cross-encoder); this "
                              "one reads single texts")
        keep = focus_words(index, settings.focus_field) if settings.keep_focus_words else set()
        self.masker = PiiMasker(ner, settings.ner_kinds, keep, settings.ner_min_score)
        if self.masker.limitations:
            log.warning("medfaq masking: %s", self.masker.limitations)
        self.threshold = self._threshold()

    @classmethod
    def from_config(cls, config: MedFaqConfig, db) -> MedFaq:
        """The FAQ an app config describes, its models loaded from their registry copies. A model version the
        registry lacks, an index missing or built with another model, an NER model that is not one, or a bad urgent
        rule is a ConfigError naming the config (or rule file) line."""
        from goldmine.apps.base import load_models

        resolved, models = load_models(config, db)  # ConfigError naming the config line for a missing version
        retriever = resolved["models.retriever"]
        index = load_faq_index(config, retriever.version, retriever.path)
        rules = UrgentRules.load(config.urgent_rules_file())
        return cls.checked(config, models["models.retriever"], index, models.get("models.reranker"),
                           models.get("models.ner"), rules)

    @classmethod
    def checked(cls, config: MedFaqConfig, retriever, index: Index, reranker, ner, rules: UrgentRules) -> MedFaq:
        """The constructor, with a model that does not fit its config field reported at that field's line (the
        server and `from_config` both build through it). The index is taken as checked (`load_faq_index`)."""
        if reranker is not None and not reranker.meta.pair:
            raise ConfigError(f"{config.where('models.reranker')}: models.reranker: a re-ranker is a pair "
                              f"classification model (a cross-encoder); {config.models.reranker.name} reads single "
                              "texts")
        try:
            return cls(config, retriever, index, reranker, ner, rules)
        except InputError as err:  # the masker's: not an NER model, or ner_kinds the model does not tag
            raise ConfigError(f"{config.where('models.ner')}: models.ner: {err}") from None
        except ConfigError as err:  # threshold: auto on a retriever without a fitted threshold
            raise ConfigError(f"{config.where('threshold')}: {err}") from None

    @classmethod
    def from_runs(cls, settings: MedFaqSettings, retriever: str | Path, index: str | Path | None = None,
                  ner: str | Path | None = None, reranker: str | Path | None = None) -> MedFaq:
        """The FAQ over run directories that are not registered (`index` default: `<retriever>/indexes/medfaq`)."""
        from goldmine.inference.model import Model

        index_dir = Path(index) if index is not None else Path(retriever) / INDEXES_DIR / "medfaq"
        return cls(settings, Model.load(retriever), Index.load(index_dir),
                   reranker=Model.load(reranker) if reranker else None, ner=Model.load(ner) if ner else None,
                   retriever_dir=retriever)

    def _threshold(self) -> float:
        if self.reranker is not None:
            return self.config.rerank_threshold
        if self.config.threshold != "auto":
            return float(self.config.threshold)
        fitted = self.retriever.meta.extra.get("retrieval", {}).get("match_threshold")
        if fitted is None:
            raise ConfigError("threshold: auto needs a retriever trained with `task: retrieval` (it stores the match "
                              "threshold fitted on its dev pairs); this retriever has none. Set a number, e.g. one "
                              "fitted by calibrate_threshold on questions with known answers")
        return float(fitted)

    # ---- answering ----
    def answer(self, question: str) -> MedFaqAnswer:
        return self.answer_many([question])[0]

    def answer_many(self, questions: list[str]) -> list[MedFaqAnswer]:
        """`answer` of several questions, with one masking, search and re-ranking pass for all of them."""
        started = time.perf_counter()
        for i, question in enumerate(questions):
            self._check(question, i if len(questions) > 1 else None)
        urgent = [self.rules.check(q) for q in questions]
        masked = self.masker.mask_many(questions)
        queries = {i: without_placeholders(m.text) for i, m in enumerate(masked) if urgent[i] is None}
        searchable = [i for i, query in queries.items() if query]
        hits = dict(zip(searchable, self._search([queries[i] for i in searchable]), strict=True))
        replies = []
        for i, mask in enumerate(masked):
            if urgent[i] is not None:
                reply = self._reply(mask, [], None, Handoff(reason="urgent", message=urgent[i].message,
                                                             rule=urgent[i].name))
            else:
                found = hits.get(i, [])
                best = found[0] if found else None
                score = None if best is None else (best.rerank_score if self.reranker is not None else best.score)
                confident = score is not None and score >= self.threshold
                reply = self._reply(mask, found, best if confident else None, None if confident else
                                    Handoff(reason="low_confidence", message=self.config.handoff_message), score)
            log.info("medfaq reply: %s entry=%s score=%s masked=%s", reply.handoff.reason if reply.handoff else
                     "answered", reply.entry_id, None if reply.score is None else round(reply.score, 4),
                     {k.value: n for k, n in mask.counts.items()})
            replies.append(reply)
        log.debug("medfaq: %d question(s) in %.1f ms", len(questions), 1000 * (time.perf_counter() - started))
        return replies

    def _check(self, question: str, position: int | None) -> None:
        where = "question" if position is None else f"question {position}"
        if not isinstance(question, str):
            raise InputError(f"{where}: give the question as text, got {type(question).__name__}")
        if not question.strip():
            raise InputError(f"{where} is empty: ask a question in words")
        if len(question) > self.config.max_question_chars:
            raise InputError(f"{where} has {len(question)} characters; the limit is "
                             f"{self.config.max_question_chars}: ask one question at a time, in short")

    def _search(self, queries: list[str]) -> list[list[Hit]]:
        if not queries:
            return []
        k = self.config.top_k
        if self.reranker is None:
            return self.index.search(queries, k=k, model=self.retriever)
        return self.index.search_and_rerank(queries, self.reranker, k=k, candidates=self.config.rerank_candidates,
                                            match_label=self.config.match_label, model=self.retriever)

    def _reply(self, mask, hits: list[Hit], chosen: Hit | None, handoff: Handoff | None,
               score: float | None = None) -> MedFaqAnswer:
        c = self.config
        return MedFaqAnswer(
            masked_question=mask.text, masked_kinds=mask.kinds,
            answer=chosen.payload.get(c.answer_field) if chosen else None,
            url=chosen.payload.get(c.url_field) if chosen else None, entry_id=chosen.id if chosen else None,
            disclaimer=c.disclaimer, score=None if score is None else round(float(score), 6),
            threshold=None if handoff is not None and handoff.reason == "urgent" else self.threshold,
            matches=[Match(id=h.id, question=h.text, score=h.score, rerank_score=h.rerank_score,
                           url=h.payload.get(c.url_field), focus=_text_or_none(h.payload.get(c.focus_field)))
                     for h in hits],
            handoff=handoff)

    # ---- calibration ----
    def best_scores(self, questions: list[str]) -> list[tuple[float, Hit]]:
        """Each question's best match and the score the answer decision reads (masked first, no urgent rules):
        what `calibrate_threshold` is fed with."""
        for i, question in enumerate(questions):
            self._check(question, i)
        queries = [without_placeholders(m.text) or m.text for m in self.masker.mask_many(questions)]
        hits = self._search(queries)
        return [((h[0].rerank_score if self.reranker is not None else h[0].score), h[0]) for h in hits]


def focus_words(index: Index, field: str = "focus") -> set[str]:
    """Lower-case words of the FAQ's topic names: medical words an NER entity may consist of without being a person
    or a place ("Al Gazali Sabrinathan Nair syndrome": al, gazali, sabrinathan, nair, syndrome)."""
    words: set[str] = set()
    for entry in index.entries:
        focus = entry.payload.get(field)
        if isinstance(focus, str):
            words.update(re.findall(r"[a-z]+", re.sub(r"['’]s\b", "", focus.lower())))
    return words


def load_faq_index(config: MedFaqConfig, version: str, version_dir: str | Path) -> Index:
    """The FAQ index the config names (`models.retriever.index`) inside the retriever's registered version,
    checked against that version's weights; a missing index, or one built with another model, is a ConfigError
    naming the config line and how to rebuild it."""
    ref = config.models.retriever
    try:
        index = Index.load(Path(version_dir) / INDEXES_DIR / ref.index)
        index.check_model(version_dir)
    except IndexUnusable as err:
        raise ConfigError(f"{config.where('models.retriever')}: models.retriever: the index {ref.index!r} of "
                          f"{ref.name} version {version} cannot be used: {_without_paths(str(err), version_dir)}. "
                          f"Build it on this version: goldmine app medfaq build-index FAQ.jsonl") from None
    return index


def build_registered_index(config: MedFaqConfig, db, faq: str | Path | list[Entry]) -> Index:
    """Build the FAQ index the config names on the registered retriever version its config resolves to (an index
    is not part of a version's content hash, so adding one leaves the version as it is). The new index replaces the
    old one whole, by a rename, so a server reading the old one is never shown half of the new one."""
    import shutil
    import tempfile

    from goldmine.apps.base import resolve_models

    entries = faq if isinstance(faq, list) else read_faq(faq)
    version_dir = Path(resolve_models(config, db)["models.retriever"].path)
    name = config.models.retriever.index
    (version_dir / INDEXES_DIR).mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=version_dir / INDEXES_DIR))
    try:
        build_index(version_dir, entries, name, out=staging / "new")
        current = version_dir / INDEXES_DIR / name
        if current.is_dir():
            current.rename(staging / "old")
        (staging / "new").rename(current)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Index.load(current)


def _without_paths(message: str, version_dir: str | Path) -> str:
    """A retrieval error without the registry's directories (a message a tenant may see)."""
    return message.replace(f"{version_dir}/", "").replace(str(version_dir), "the model version")


def _text_or_none(value) -> str | None:
    return value if isinstance(value, str) else None
