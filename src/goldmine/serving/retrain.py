"""Retrain: the live version's training data plus the corrections it has had, trained as a new `candidate`.

`retrain(db, settings, name)` (`goldmine retrain NAME`) takes the training split of the version the live alias points
to (the files its `config.yaml` names, cut as its training cut them; a retrained version's files are the merged ones
this module wrote, so each retrain starts from the last), adds the texts kept with feedback, and trains with the
same config into a new run (dotted `overrides` change it, as for `goldmine train`). Merging, reported with counts:

- feedback on one text is one example: repeats with the same label are **duplicates**, merged; feedback that gives
  one text different labels is a **conflict between corrections**, and the latest feedback wins;
- a correction of a text the training data has with another label is a **conflict with the training data**: the
  correction wins (every training copy of that text is relabelled); with the same label it is a duplicate;
- texts of the frozen evaluation set (`goldmine.serving.gate`) and of the run's dev and test splits are never
  trained on; labels the model has no class for (an out-of-scope fallback label) are not trained on either;
- a seeded `feedback.holdout_fraction` of the texts the live version has not trained on is held out, for the gate
  to check that the candidate answers unseen corrections better than the live version.

The dev and test splits stay those of the live version, so before-vs-after tables line up. The run records which
feedback it trained on and held out in `retrain.json`, which becomes part of the registered version. The version
gets alias `candidate` (never `production` by itself); the gate runs at once and its report is stored; with
`feedback.auto_promote` a passing candidate is promoted.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from goldmine.data.schema import DataKind, LabeledData, TextExample
from goldmine.data.splits import run_splits
from goldmine.data.writers import write_data
from goldmine.errors import GoldmineError
from goldmine.inference.model import RunMeta
from goldmine.serving.datasets import tenant_root
from goldmine.serving.db import Database, Feedback, ModelAlias, utcnow
from goldmine.serving.errors import Conflict
from goldmine.serving.gate import RETRAIN_FILE, GateResult, frozen_texts, run_gate, trained_feedback
from goldmine.serving.registry import get_model, promote, register, resolve
from goldmine.serving.settings import ServingSettings

log = logging.getLogger(__name__)

HOLDOUT_SEED = 13


@dataclass
class FeedbackRow:
    id: int
    text: str
    label: str
    created_at: datetime


@dataclass
class MergeReport:
    """What a retrain made of the live training data and the feedback (counts are of texts unless said)."""

    training_examples: int = 0  # examples of the live version's training split
    feedback: int = 0  # feedback items with a kept text
    texts: int = 0  # distinct texts among them
    duplicates: int = 0  # feedback items repeating a label the text already had (from feedback or training)
    conflicts_between_feedback: int = 0  # texts feedback gave different labels: the latest feedback won
    conflicts_with_training: int = 0  # texts the training data had with another label: the correction won
    relabeled_examples: int = 0  # training examples relabelled by those corrections
    added: int = 0  # texts new to the training data
    not_trained_evaluation: int = 0  # texts of the frozen evaluation set or the dev/test splits: never trained on
    not_trained_label: int = 0  # texts whose label the model has no class for
    held_out: int = 0  # texts held out for the gate
    final_examples: int = 0  # training examples of the candidate
    trained_feedback: list[int] = field(default_factory=list)  # feedback ids trained on
    held_out_feedback: list[int] = field(default_factory=list)  # feedback ids held out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.training_examples} training examples + {self.feedback} feedback on {self.texts} texts: "
                f"{self.added} added, {self.conflicts_with_training} relabelled ({self.relabeled_examples} examples; "
                f"correction won), {self.conflicts_between_feedback} conflicts between feedback (latest won), "
                f"{self.duplicates} duplicates merged, {self.held_out} held out for the gate, "
                f"{self.not_trained_evaluation} in evaluation data and {self.not_trained_label} with unknown labels "
                f"not trained on -> {self.final_examples} training examples")


@dataclass
class RetrainResult:
    model: str
    version: str
    parent: str
    run_dir: str
    merge: MergeReport
    gate: GateResult | None
    gate_error: str | None
    promoted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def merge_feedback(train: LabeledData, feedback: list[FeedbackRow], labels: set[str], never_train: set[str],
                   live_trained: set[int], holdout_fraction: float,
                   seed: int = HOLDOUT_SEED) -> tuple[LabeledData, MergeReport]:
    """The candidate's training data: `train` with the feedback merged in (see the module docstring)."""
    report = MergeReport(training_examples=len(train), feedback=len(feedback))
    by_text: dict[str, list[FeedbackRow]] = {}
    for row in sorted(feedback, key=lambda r: (r.created_at, r.id)):
        by_text.setdefault(row.text, []).append(row)
    report.texts = len(by_text)
    trained_labels: dict[str, set[str]] = {}
    for ex in train.examples:
        trained_labels.setdefault(ex.text, set()).update(ex.labels)
    winners: dict[str, FeedbackRow] = {}
    for text, rows in by_text.items():
        winner = rows[-1]
        if len({r.label for r in rows}) > 1:
            report.conflicts_between_feedback += 1
        report.duplicates += sum(1 for r in rows[:-1] if r.label == winner.label)
        if text in never_train:
            report.not_trained_evaluation += 1
        elif winner.label not in labels:
            report.not_trained_label += 1
        else:
            winners[text] = winner
    candidates = sorted(t for t, rows in by_text.items() if t in winners and not {r.id for r in rows} & live_trained)
    count = round(holdout_fraction * len(candidates))
    if holdout_fraction > 0 and len(candidates) >= 2:
        count = max(count, 1)
    held = set(random.Random(seed).sample(candidates, count)) if count else set()
    report.held_out = len(held)
    corrections = {text: row.label for text, row in winners.items() if text not in held}
    examples = []
    for ex in train.examples:
        label = corrections.get(ex.text)
        if label is not None and ex.labels != (label,):
            report.relabeled_examples += 1
            ex = TextExample(ex.text, (label,), ex.text_b, ex.source)
        examples.append(ex)
    for text, label in corrections.items():
        if text not in trained_labels:
            report.added += 1
            examples.append(TextExample(text, (label,), source=f"feedback:{winners[text].id}"))
        elif trained_labels[text] != {label}:
            report.conflicts_with_training += 1
        else:
            report.duplicates += 1
    report.trained_feedback = sorted(r.id for t in corrections for r in by_text[t])
    report.held_out_feedback = sorted(r.id for t in held for r in by_text[t])
    report.final_examples = len(examples)
    return LabeledData(DataKind.TEXT, examples, f"{train.path} + feedback"), report


def retrain(db: Database, settings: ServingSettings, name: str, tenant: str | None = None,
            overrides: dict[str, Any] | None = None, callbacks: list | None = None) -> RetrainResult:
    """Train the live version's data plus the feedback into a new `candidate` version of `name`, gate it, and
    (with `feedback.auto_promote`) promote it when it passes. `tenant` None: an operator (any tenant's model)."""
    from goldmine.config import load_config
    from goldmine.training.trainer import train

    alias = settings.default_alias
    with db.session() as session:
        owner = get_model(session, name, tenant).tenant_id
        live_alias = session.get(ModelAlias, (name, alias))
        if live_alias is None:
            raise Conflict(f"model {name!r} has no {alias} version to retrain from")
        live = resolve(session, name, live_alias.version)
        rows = session.execute(select(Feedback.id, Feedback.text, Feedback.label, Feedback.created_at)
                               .where(Feedback.model == name, Feedback.text.is_not(None))).all()
    feedback = [FeedbackRow(*row) for row in rows]
    if not feedback:
        raise Conflict(f"model {name!r} has no feedback with a kept text to train on (texts are kept when the tenant "
                       "keeps texts, or when a feedback carries its text)")
    live_path = Path(live.path)
    meta = RunMeta.load(live_path)
    try:
        splits = run_splits(live_path)
    except GoldmineError as err:
        raise Conflict(f"cannot read the training data of version {live.version} of {name!r}: {err}") from None
    if meta.task != "classification" or splits["train"].kind is not DataKind.TEXT:
        raise Conflict(f"retrain covers single-label classification of single texts; {name!r} is {meta.task}")
    never = frozen_texts(db, settings, name) | {ex.text for s in ("dev", "test") for ex in splits[s].examples}
    data, report = merge_feedback(splits["train"], feedback, set(meta.label_names), never,
                                  trained_feedback(live_path), settings.feedback.holdout_fraction)
    log.info("retrain %s: %s", name, report.summary())
    folder = tenant_root(settings, owner) / "retrain" / name / utcnow().strftime("%Y%m%dT%H%M%S%f")
    files = {split: write_data(part, folder / "data" / f"{split}.jsonl")
             for split, part in (("train", data), ("dev", splits["dev"]), ("test", splits["test"]))}
    config = load_config(live_path / "config.yaml", {
        **{f"data.{split}": str(path) for split, path in files.items()},
        "data.text_column": "text", "data.label_column": "label", "output_dir": str(folder / "run"),
        **(overrides or {})})
    train(config, callbacks=callbacks)
    run = Path(config.output_dir)
    (run / RETRAIN_FILE).write_text(json.dumps({"parent": live.version, **report.to_dict()}, indent=2))
    version = register(db, settings.registry_dir, name, run, owner, first_alias=None).version
    promote(db, name, version, alias="candidate", tenant=owner)
    gate, gate_error, promoted = None, None, False
    try:
        gate = run_gate(db, settings, name, version, owner)
    except GoldmineError as err:
        gate_error = str(err)
        log.warning("retrain %s: the gate could not run: %s", name, err)
    if gate is not None and gate.passed and settings.feedback.auto_promote:
        promote(db, name, version, alias, owner)  # it has just passed: not measured twice
        promoted = True
        log.info("retrain %s: version %s passed the gate and is now %s", name, version, alias)
    return RetrainResult(name, version, live.version, str(run), report, gate, gate_error, promoted)
