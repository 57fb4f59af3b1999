"""The regression gate: a candidate version replaces the live one only if it loses nothing that matters.

Measured against the version the live alias (`production`) points to, through the serving runtime (what is measured
is what is served), on three sets the candidate never trained on or that pin down what it must keep:

- **the frozen evaluation set** of the model: the test split of its first production version, copied into the
  registry (`<registry_dir>/eval-sets/<model>/eval.jsonl`) with its sha256 the first time the model is retrained,
  gated or promoted under the gate, and never changed after. A retrain never trains on its texts. The candidate may
  lose at most `feedback.tolerance` of accuracy and of macro F1, and `feedback.class_tolerance` of F1 on any class
  beyond that class's sampling noise: a frozen set holds a few dozen examples of a class at best (about 40 for
  banking77's test split), where two answers move F1 by 0.05, so a fixed tolerance alone refuses every candidate
  that differs anywhere. A class fails when a paired bootstrap of the frozen set (both versions' answers resampled
  together) is `feedback.class_confidence` sure that its loss exceeds the tolerance; a class with hundreds of
  examples is held to the tolerance itself, a class of 15 fails on a collapse, not on one answer.
- **the original training distribution** (`original.jsonl`, frozen with it): a seeded sample of that first version's
  training data, without texts a feedback has since corrected. Losing more than `feedback.forgetting_tolerance` of
  accuracy there is forgetting: the corrections pulled the model away from what it was built for.
- **the feedback the candidate has not seen** (texts kept with feedback, neither trained on by the candidate, as its
  `retrain.json` says, nor by the live version): the candidate must answer it better than the live version does
  (strictly, unless the live version is already perfect). With no such feedback the check is reported as skipped.

Every run's report (each check with both numbers, its limit and its verdict) is stored in `gate_reports` and shown
by `goldmine gate` and `GET /v1/models/{name}/gate`. A promotion of the live alias runs the gate and refuses a
failing candidate (409) unless forced; other aliases (staging, candidate) move freely.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from goldmine.data.readers import read_file
from goldmine.data.schema import DataKind, LabeledData, TextExample
from goldmine.data.splits import run_splits
from goldmine.data.writers import write_data
from goldmine.errors import GoldmineError
from goldmine.inference.model import RunMeta
from goldmine.serving.db import AliasChange, Database, EvalSet, Feedback, GateReport, ModelAlias, utcnow
from goldmine.serving.errors import Conflict, InvalidRequest, NotFound
from goldmine.serving.private import private_dir, private_file
from goldmine.serving.registry import AliasMove, get_model, promote, resolve
from goldmine.serving.settings import ServingSettings

log = logging.getLogger(__name__)

EVAL_FILE, ORIGINAL_FILE = "eval.jsonl", "original.jsonl"
RETRAIN_FILE = "retrain.json"  # written by goldmine.serving.retrain into the run: which feedback it trained on
SAMPLE_SEED = 13


class GateFailed(Conflict):
    """The candidate did not pass the regression gate; the message lists the failed checks."""

    code = "gate_failed"


@dataclass
class Check:
    name: str
    candidate: float | None
    live: float | None
    limit: str  # what the candidate's number had to be
    passed: bool
    examples: int = 0
    note: str | None = None


@dataclass
class GateResult:
    model: str
    candidate: str
    live: str
    passed: bool
    eval_set: dict[str, Any]
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failures(self) -> list[str]:
        return [f"{c.name}: candidate {c.candidate:.4f} vs live {c.live:.4f} (needed {c.limit})"
                for c in self.checks if not c.passed and c.candidate is not None and c.live is not None]


# ---- the frozen evaluation set ----

def _first_production(session, name: str, alias: str) -> str:
    first = session.scalar(select(AliasChange.version)
                           .where(AliasChange.model_name == name, AliasChange.alias == alias)
                           .order_by(AliasChange.id).limit(1))
    if first is None:
        raise Conflict(f"model {name!r} has no {alias} version yet: nothing to freeze an evaluation set from")
    return first


def freeze_eval_set(db: Database, settings: ServingSettings, name: str, tenant: str | None = None) -> EvalSet:
    """The model's frozen evaluation set, made now from its first production version if it has none yet."""
    with db.session() as session:
        get_model(session, name, tenant)
        row = session.get(EvalSet, name)
        if row is not None:
            return row
        version = _first_production(session, name, settings.default_alias)
        path = Path(resolve(session, name, version).path)
    try:
        splits = run_splits(path)
    except GoldmineError as err:
        raise Conflict(f"cannot freeze an evaluation set for {name!r} from version {version}: {err}") from None
    if splits["train"].kind is not DataKind.TEXT or not len(splits["test"]):
        raise Conflict(f"version {version} of {name!r} has no single-text test split to freeze (the feedback loop "
                       "covers single-label classification)")
    train = splits["train"]
    keep = sorted(random.Random(SAMPLE_SEED).sample(range(len(train)), min(len(train), settings.feedback
                                                                               .forgetting_sample)))
    assert settings.registry_dir is not None
    folder = private_dir(Path(settings.registry_dir) / "eval-sets" / name)
    for file, data in ((EVAL_FILE, splits["test"]), (ORIGINAL_FILE, train.subset(keep))):
        write_data(LabeledData(data.kind, data.examples, data.path, data.multi_label), private_file(folder / file))
    digest = hashlib.sha256(b"".join((folder / f).read_bytes() for f in (EVAL_FILE, ORIGINAL_FILE))).hexdigest()
    with db.session() as session:
        row = session.get(EvalSet, name)
        if row is None:  # (a concurrent freeze wrote the same files from the same version)
            row = EvalSet(model_name=name, version=version, path=str(folder), sha256=digest,
                          examples=len(splits["test"]), created_at=utcnow())
            session.add(row)
            session.flush()
    log.info("froze the evaluation set of %s from version %s: %d examples, sha256 %s", name, version,
             row.examples, row.sha256[:12])
    return row


def load_eval_set(row: EvalSet) -> tuple[LabeledData, LabeledData]:
    """(evaluation set, original training sample), after checking the files still have the frozen hash."""
    folder = Path(row.path)
    digest = hashlib.sha256(b"".join((folder / f).read_bytes() for f in (EVAL_FILE, ORIGINAL_FILE))).hexdigest()
    if digest != row.sha256:
        raise Conflict(f"the frozen evaluation set of {row.model_name!r} at {folder} was changed (sha256 {digest[:12]}"
                       f", frozen as {row.sha256[:12]}); restore it")
    return read_file(folder / EVAL_FILE), read_file(folder / ORIGINAL_FILE)


def frozen_texts(db: Database, settings: ServingSettings, name: str) -> set[str]:
    """Texts of the frozen evaluation set: what a retrain must never train on."""
    return {ex.text for ex in load_eval_set(freeze_eval_set(db, settings, name))[0].examples}


# ---- the checks ----

def trained_feedback(path: str | Path) -> set[int]:
    """Ids of the feedback a version trained on (its `retrain.json`; none for a version not made by a retrain)."""
    file = Path(path) / RETRAIN_FILE
    return set(json.loads(file.read_text())["trained_feedback"]) if file.is_file() else set()


class _Models:
    """The two versions, each loaded once (on the serving runtime) and scored on every set."""

    def __init__(self, settings: ServingSettings, paths: dict[str, str]):
        from goldmine.inference.model import Model

        self.models = {who: Model.load(path, runtime=settings.runtime, threads=settings.inference_threads)
                       for who, path in paths.items()}

    def scores(self, data: LabeledData) -> dict[str, dict[str, Any]]:
        from goldmine.evaluation.evaluate import evaluate

        return {who: evaluate(model, data) for who, model in self.models.items()}

    def answers(self, data: LabeledData) -> dict[str, list[str]]:
        """Each version's label for each example (an out-of-scope answer is its fallback label)."""
        texts = [ex.text for ex in data.examples]
        return {who: [p["label"] for p in model.predict(texts)] for who, model in self.models.items()}


def _at_least(name: str, candidate: float, live: float, tolerance: float, examples: int) -> Check:
    return Check(name, round(candidate, 6), round(live, 6), f">= {live - tolerance:.4f}",
                 candidate >= live - tolerance - 1e-12, examples)


def run_gate(db: Database, settings: ServingSettings, name: str, candidate: str, tenant: str | None = None,
             alias: str | None = None) -> GateResult:
    """Measure `candidate` (a version or alias) against the version `alias` (default: the live one) points to; the
    report is stored whatever the verdict."""
    alias = alias or settings.default_alias
    cfg = settings.feedback
    with db.session() as session:
        get_model(session, name, tenant)
        cand = resolve(session, name, candidate)
        live_alias = session.get(ModelAlias, (name, alias))
        if live_alias is None:
            raise Conflict(f"model {name!r} has no {alias} version to gate against")
        live = resolve(session, name, live_alias.version)
        if cand.version == live.version:
            raise InvalidRequest(f"candidate: {candidate!r} is the {alias} version already")
        cand_path, live_path = cand.path, live.path
        feedback = session.execute(select(Feedback.id, Feedback.text, Feedback.label, Feedback.correct)
                                   .where(Feedback.model == name, Feedback.text.is_not(None))
                                   .order_by(Feedback.id)).all()
    frozen = freeze_eval_set(db, settings, name, tenant)
    evaluation, original = load_eval_set(frozen)
    result = GateResult(name, cand.version, live.version, False,
                        {"version": frozen.version, "sha256": frozen.sha256, "examples": len(evaluation),
                         "original_examples": len(original)})
    models = _Models(settings, {"candidate": cand_path, "live": live_path})
    scores = models.scores(evaluation)
    n = len(evaluation)
    for metric in ("accuracy", "macro_f1"):
        result.checks.append(_at_least(f"frozen set {metric}", scores["candidate"][metric], scores["live"][metric],
                                       cfg.tolerance, n))
    answers = models.answers(evaluation)
    result.checks += class_checks([ex.labels[0] for ex in evaluation.examples], answers["candidate"],
                                  answers["live"], cfg.class_tolerance, cfg.class_confidence, cfg.bootstrap_resamples)
    corrected = {text for _, text, _, correct in feedback if not correct}
    kept = LabeledData(original.kind, [ex for ex in original.examples if ex.text not in corrected], original.path)
    if len(kept):
        forget = models.scores(kept)
        result.checks.append(_at_least("forgetting: original training sample accuracy", forget["candidate"]
                                       ["accuracy"], forget["live"]["accuracy"], cfg.forgetting_tolerance, len(kept)))
    seen = trained_feedback(cand_path) | trained_feedback(live_path)
    frozen_texts = {ex.text for ex in evaluation.examples}
    unseen = [(text, label) for fid, text, label, _ in feedback if fid not in seen and text not in frozen_texts]
    result.checks.append(_held_out_check(models, unseen))
    result.passed = all(c.passed for c in result.checks)
    with db.session() as session:
        session.add(GateReport(model_name=name, candidate=cand.version, live=live.version, passed=result.passed,
                               report_json=json.dumps(result.to_dict()), created_at=utcnow()))
    log.info("gate %s: candidate %s vs live %s: %s", name, cand.version, live.version,
             "passed" if result.passed else "FAILED: " + "; ".join(result.failures()))
    return result


def _f1_per_class(weights: np.ndarray, gold: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """F1 of every class (columns) under each row of example weights: `gold` and `predicted` are one-hot (n, k)."""
    true_positives = weights @ (gold * predicted)
    denominator = weights @ predicted + weights @ gold
    return np.divide(2 * true_positives, denominator, out=np.zeros_like(true_positives), where=denominator > 0)


def class_checks(gold: list[str], candidate: list[str], live: list[str], tolerance: float, confidence: float,
                 resamples: int, seed: int = SAMPLE_SEED) -> list[Check]:
    """One check per class of `gold`: the candidate's F1 may fall below the live version's by `tolerance`, or by
    more when a paired bootstrap (examples resampled with both answers, `resamples` times) finds the loss within
    the tolerance in more than 1 - `confidence` of the resamples: a loss the class's few examples cannot tell from
    noise. Seeded, so the same answers always get the same verdict."""
    classes = sorted(set(gold))
    index = {label: i for i, label in enumerate(classes)}
    n, k = len(gold), len(classes)

    def one_hot(labels: list[str]) -> np.ndarray:
        matrix = np.zeros((n, k), dtype=np.float64)
        for row, label in enumerate(labels):
            if label in index:  # a label the set has no example of is a false positive of no class here
                matrix[row, index[label]] = 1.0
        return matrix

    truth, ours, theirs = one_hot(gold), one_hot(candidate), one_hot(live)
    support = truth.sum(axis=0).astype(int)
    whole = np.ones((1, n))
    f1_candidate, f1_live = _f1_per_class(whole, truth, ours)[0], _f1_per_class(whole, truth, theirs)[0]
    lost = f1_live - f1_candidate > tolerance + 1e-12
    within = np.ones(k)  # share of resamples where the loss is within the tolerance
    if lost.any():
        rng, counted, done = np.random.default_rng(seed), np.zeros(k), 0
        while done < resamples:
            size = min(500, resamples - done)
            weights = rng.multinomial(n, np.full(n, 1 / n), size=size).astype(np.float64)
            drop = _f1_per_class(weights, truth, theirs) - _f1_per_class(weights, truth, ours)
            counted += (drop <= tolerance + 1e-12).sum(axis=0)
            done += size
        within = counted / resamples
    checks = []
    for i, label in enumerate(classes):
        check = Check(f"frozen set class {label!r} f1", round(float(f1_candidate[i]), 6), round(float(f1_live[i]), 6),
                      f">= {f1_live[i] - tolerance:.4f} unless within noise", True, int(support[i]))
        if lost[i]:
            check.passed = bool(within[i] > 1 - confidence)
            check.note = (f"lost {f1_live[i] - f1_candidate[i]:.4f} F1 on {support[i]} examples; within the tolerance "
                          f"in {within[i]:.1%} of {resamples} paired bootstrap resamples: "
                          + ("sampling noise" if check.passed else f"a regression at {confidence:.0%} confidence"))
        checks.append(check)
    return checks


def _held_out_check(models: _Models, unseen: list[tuple[str, str]]) -> Check:
    """Candidate vs live on feedback neither trained on (labels both know: an out-of-scope label is not scored)."""
    name = "feedback not trained on: accuracy"
    known = set.intersection(*(set(model.meta.label_names) for model in models.models.values()))
    examples = [TextExample(text, (label,), source=f"feedback:{i}") for i, (text, label) in enumerate(unseen)
                if label in known]
    if not examples:
        return Check(name, None, None, "> live", True, 0, "skipped: no feedback with text the candidate has not "
                     "trained on")
    scores = models.scores(LabeledData(DataKind.TEXT, examples, "feedback"))
    ours, theirs = scores["candidate"]["accuracy"], scores["live"]["accuracy"]
    passed = ours > theirs or ours == theirs == 1.0
    return Check(name, round(ours, 6), round(theirs, 6), f"> {theirs:.4f}", passed, len(examples))


def latest_report(db: Database, tenant: str | None, name: str) -> dict[str, Any]:
    """The newest stored gate report of `name` (NotFound when the gate never ran)."""
    with db.session() as session:
        get_model(session, name, tenant)
        row = session.scalar(select(GateReport).where(GateReport.model_name == name)
                             .order_by(GateReport.id.desc()).limit(1))
        if row is None:
            raise NotFound(f"the gate has not run for model {name!r}")
        return {"model": name, "candidate": row.candidate, "live": row.live, "passed": row.passed,
                "created_at": row.created_at.isoformat(timespec="seconds") + "Z",
                "report": json.loads(row.report_json)}


# ---- promotion under the gate ----

def gated(path: Path) -> bool:
    """Whether promotions over the version at `path` are gated: a single-label classifier of single texts trained
    on data its config names (NER, multi-label, pairs, ensembles and label-file zero-shot models are not, yet)."""
    from goldmine.config import load_config

    meta = RunMeta.load(path)
    if meta.task != "classification" or meta.pair or meta.members or not (path / "config.yaml").is_file():
        return False
    return load_config(path / "config.yaml").data.train is not None


def require_pass(db: Database, settings: ServingSettings, name: str, version: str, alias: str,
                 tenant: str | None = None, force: bool = False) -> GateResult | None:
    """Run the gate when `alias` is the live alias and would change; raise GateFailed on a failure unless `force`
    (the report is stored either way). None when no gate applies (another alias, or nothing live yet)."""
    if alias != settings.default_alias:
        return None
    with db.session() as session:
        current = session.get(ModelAlias, (name, alias))
        if current is None or current.version == resolve(session, name, version, tenant).version:
            return None
        live_path = Path(resolve(session, name, current.version).path)
    if not gated(live_path):
        log.info("no regression gate for %s: its live version is not a single-text classifier trained on data",
                 name)
        return None
    result = run_gate(db, settings, name, version, tenant, alias)
    if not result.passed and not force:
        raise GateFailed(f"version {result.candidate} of {name!r} failed the regression gate: "
                         f"{'; '.join(result.failures())} (report: goldmine gate {name} --show; --force promotes "
                         "anyway)")
    return result


def promote_gated(db: Database, settings: ServingSettings, name: str, target: str, alias: str = "production",
                  tenant: str | None = None, force: bool = False) -> tuple[AliasMove, GateResult | None]:
    """`registry.promote` behind the gate: what `goldmine models promote` and the admin route do."""
    result = require_pass(db, settings, name, target, alias, tenant, force)
    return promote(db, name, result.candidate if result else target, alias, tenant), result
