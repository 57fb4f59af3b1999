"""Out-of-scope: an intent model that can answer "none of these".

Users ask things no label covers. Two ways to notice, used alone or together:

- an explicit class: the training data has a label for out-of-scope texts (clinc150's `oos`); predicting it is
  answering "none of these".
- a score threshold: how sure the model is that a text is one of its labels, compared with a threshold fitted on
  dev. Scores (higher = more in scope):
    max_probability  the top softmax probability (Hendrycks & Gimpel, 2017);
    energy           logsumexp of the logits, the negative free energy (Liu et al., "Energy-based Out-of-
                     distribution Detection", NeurIPS 2020): unlike the softmax it keeps how large the logits are;
    prototype        the cosine similarity of the text's pooled embedding to the nearest class prototype (the mean
                     embedding of the class's training texts);
    mahalanobis      minus the smallest Mahalanobis distance of the pooled embedding to a class prototype, under
                     the training texts' shared covariance (Lee et al., NeurIPS 2018; Podolskiy et al., "Revisiting
                     Mahalanobis Distance for Transformer-Based Out-of-Domain Detection", AAAI 2021, found it the
                     strongest score for intent models on CLINC150).
  The logit scores see only what the head was trained to tell apart; the embedding scores also see how far a text
  lies from everything the model was trained on. `auto` measures every score on dev. When dev has out-of-scope
  examples it keeps the score with the highest AUROC of out-of-scope against in-scope texts. When it has none, the
  only separation dev can show is of wrong answers from right ones, which is another question (a model's own
  mistakes lie near the boundary between two of its classes, out-of-scope texts away from all of them): measured
  on clinc150 without oos training (bench/results/fewshot.md), max_probability separated wrong from right best
  (0.95 against 0.78 for Mahalanobis) and out-of-scope from in-scope worst (0.963 against 0.984). So without
  out-of-scope dev texts `auto` takes the Mahalanobis distance when the model pools an embedding, and the
  logit score with the higher wrong-vs-right AUROC otherwise.

The threshold is the lowest score at which in-scope precision on dev, P(the answer is right | it was given),
reaches `target_precision`: as many answers as possible, each as often right as the target says. Precision sees
only the out-of-scope texts dev happens to have (often none), so the threshold is also raised until at least
`min_in_scope_sent_away` of the in-scope dev texts fall below it (default 0.01): the share of in-scope answers a
user gives up to catch texts no dev set showed (the "95% TPR" operating point of the out-of-distribution
literature is 0.05). On clinc150 without oos training, 0.01 took out-of-scope recall from 0.18 to 0.85.

The rule is stored in the run's `goldmine.json` (`out_of_scope`) and, for an embedding score, the prototypes and
precision matrix in `out_of_scope_prototypes.npz` beside it. It works on every runtime (exported graphs output the
pooled embedding beside the logits) and in every entry point: predictions carry `out_of_scope` and, when it is
true, the fallback label (the label the model would have given is kept as `closest_label`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

LOGIT_SCORES = ("max_probability", "energy")
EMBEDDING_SCORES = ("prototype", "mahalanobis")
SCORES = LOGIT_SCORES + EMBEDDING_SCORES
PROTOTYPES_FILE = "out_of_scope_prototypes.npz"


@dataclass
class Prototypes:
    """The in-scope classes' mean pooled embeddings of the training texts, and the precision matrix (inverse) of
    their shared within-class covariance, shrunk by Ledoit-Wolf: a few-shot run has fewer texts than dimensions,
    where the plain estimate cannot be inverted."""

    means: np.ndarray  # (K, H), one row per in-scope class
    precision: np.ndarray  # (H, H)

    @classmethod
    def fit(cls, embeddings: np.ndarray, label_ids: np.ndarray, skip_class: int = -1) -> Prototypes:
        """From training embeddings (N, H) and their class ids; `skip_class` (an explicit out-of-scope class) is
        no prototype: a text near it is out of scope."""
        from sklearn.covariance import LedoitWolf

        embeddings = np.asarray(embeddings, dtype=np.float64)
        classes = [c for c in np.unique(label_ids) if c != skip_class]
        if not classes:
            raise ValueError("prototypes need training texts of at least one in-scope class")
        means = np.stack([embeddings[label_ids == c].mean(axis=0) for c in classes])
        kept = np.isin(label_ids, classes)
        centred = embeddings[kept] - means[np.searchsorted(classes, label_ids[kept])]
        precision = LedoitWolf(assume_centered=True).fit(centred).precision_
        return cls(means.astype(np.float32), precision.astype(np.float32))

    def cosine(self, embeddings: np.ndarray) -> np.ndarray:
        """(N,) the cosine similarity of each embedding to its nearest prototype."""
        unit = _unit(np.asarray(embeddings, dtype=np.float64))
        return (unit @ _unit(self.means.astype(np.float64)).T).max(axis=1)

    def mahalanobis(self, embeddings: np.ndarray) -> np.ndarray:
        """(N,) minus each embedding's smallest Mahalanobis distance (squared) to a prototype."""
        x = np.asarray(embeddings, dtype=np.float64)
        means, precision = self.means.astype(np.float64), self.precision.astype(np.float64)
        # (x - m)^T P (x - m) = x^T P x - 2 x^T P m + m^T P m, for every pair at once
        xp = x @ precision
        distances = (xp * x).sum(axis=1)[:, None] - 2 * xp @ means.T + ((means @ precision) * means).sum(axis=1)
        return -distances.min(axis=1)

    def save(self, path: Path) -> None:
        np.savez(path, means=self.means, precision=self.precision)

    @classmethod
    def load(cls, path: Path) -> Prototypes:
        from goldmine.errors import ModelError

        if not path.is_file():
            raise ModelError(f"{path} is missing: the run's out-of-scope rule measures distances to its class "
                             "prototypes, which training writes there (copy the whole run directory)")
        with np.load(path) as stored:
            return cls(stored["means"], stored["precision"])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def in_scope_scores(logits: np.ndarray, method: str, embeddings: np.ndarray | None = None,
                    prototypes: Prototypes | None = None) -> np.ndarray:
    """(N,) how in-scope each text looks from its logits (N, C), or for an embedding score its pooled embedding
    (N, H) and the run's prototypes; higher is more in scope."""
    if method in EMBEDDING_SCORES:
        if embeddings is None or prototypes is None:
            raise ValueError(f"the {method} score needs the texts' pooled embeddings and the class prototypes")
        return prototypes.cosine(embeddings) if method == "prototype" else prototypes.mahalanobis(embeddings)
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=1)
    log_partition = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    if method == "max_probability":
        return np.exp(top - log_partition)
    if method == "energy":
        return log_partition
    raise ValueError(f"unknown out-of-scope score {method!r}; choose from {SCORES}")


@dataclass
class OutOfScopeRule:
    """How a trained model decides "none of these" (saved in its run directory)."""

    fallback_label: str
    label: str | None = None  # the name out-of-scope examples carry in data (e.g. "oos")
    explicit: bool = False  # `label` is one of the model's classes: predicting it is out of scope
    method: str | None = None  # a score of SCORES, or None (the explicit class alone)
    threshold: float | None = None  # in scope when the score is at least this
    # an embedding score's class prototypes (PROTOTYPES_FILE in the run directory, not in the record)
    prototypes: Prototypes | None = field(default=None, repr=False, compare=False)

    @property
    def needs_embeddings(self) -> bool:
        """The score reads the texts' pooled embeddings, not only their logits."""
        return self.method in EMBEDDING_SCORES

    def decide(self, logits: np.ndarray, label_names: list[str], embeddings: np.ndarray | None = None
               ) -> np.ndarray:
        """(N,) True where a text, by its logits (N, C) (and pooled embedding (N, H) for an embedding score), is
        out of scope."""
        out = np.zeros(len(logits), dtype=bool)
        if self.method is not None and self.threshold is not None:
            out |= in_scope_scores(logits, self.method, embeddings, self.prototypes) < self.threshold
        if self.explicit and self.label in label_names:
            out |= np.asarray(logits).argmax(axis=1) == label_names.index(self.label)
        return out

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "prototypes"}

    @classmethod
    def from_dict(cls, record: dict | None, run_dir: Path | None = None) -> OutOfScopeRule | None:
        """The rule of a run's record; an embedding score's prototypes are read from `run_dir`."""
        if not record:
            return None
        rule = cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record and k != "prototypes"})
        if rule.needs_embeddings and run_dir is not None:
            rule.prototypes = Prototypes.load(Path(run_dir) / PROTOTYPES_FILE)
        return rule


def apply(answer: dict, out_of_scope: bool, rule: OutOfScopeRule) -> dict:
    """One classification answer with `out_of_scope`; the fallback label replaces the label when it is true."""
    if out_of_scope:
        return {**answer, "label": rule.fallback_label, "closest_label": answer["label"], "out_of_scope": True}
    return {**answer, "out_of_scope": False}


def auroc(in_scope: np.ndarray, out_of_scope: np.ndarray) -> float | None:
    """P(an in-scope score > an out-of-scope score), ties half; None when either side is empty."""
    from sklearn.metrics import roc_auc_score

    if not len(in_scope) or not len(out_of_scope):
        return None
    truth = np.r_[np.ones(len(in_scope)), np.zeros(len(out_of_scope))]
    return float(roc_auc_score(truth, np.r_[in_scope, out_of_scope]))


def precision_threshold(scores: np.ndarray, right: np.ndarray, target: float) -> float:
    """The lowest threshold at which the answers given (score >= threshold) are right at least `target` of the
    time; when no threshold reaches it, the one with the best precision. `right` is False for out-of-scope
    examples (any answer to them is wrong) and for wrong in-scope answers."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], right[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)  # of the answers given down to each position
    last = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]  # only cut between different scores
    good = np.flatnonzero((precision >= target) & last)
    if len(good):
        return float(sorted_scores[good[-1]])
    return float(sorted_scores[np.flatnonzero(last)[np.argmax(precision[last])]])


@dataclass
class Outputs:
    """What the network gave for some texts: logits (N, C) and, when an embedding score needs them, the pooled
    embeddings (N, H)."""

    logits: np.ndarray
    embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.logits)

    def scores(self, method: str, prototypes: Prototypes | None) -> np.ndarray:
        if not len(self):
            return np.zeros(0)
        return in_scope_scores(self.logits, method, self.embeddings, prototypes)


def _outputs(value) -> Outputs:
    return value if isinstance(value, Outputs) else Outputs(np.asarray(value))


def fit_rule(inside, labels_in: np.ndarray, outside, label_names: list[str], method: str,
             target_precision: float, label: str | None, fallback: str | None,
             prototypes: Prototypes | None = None, min_sent_away: float = 0.0) -> tuple[OutOfScopeRule, dict]:
    """The rule fitted on dev: the in-scope texts' outputs (logits (N, C), or `Outputs` with embeddings) with
    their true label ids, and the out-of-scope texts' outputs (M may be 0). Embedding scores are measured when
    `prototypes` are given. Returns the rule and a report of every score measured."""
    inside, outside = _outputs(inside), _outputs(outside)
    explicit = label is not None and label in label_names
    rule = OutOfScopeRule(fallback_label=fallback or label or "out_of_scope", label=label, explicit=explicit)
    oos_class = label_names.index(label) if explicit else -1
    predicted_in = inside.logits.argmax(axis=1)
    predicted_out = outside.logits.argmax(axis=1) if len(outside) else np.zeros(0, dtype=int)
    right = (predicted_in == labels_in) & (labels_in != oos_class)
    # examples that reach the threshold at all: those the explicit class (if any) did not already send away
    kept_in, kept_out = predicted_in != oos_class, predicted_out != oos_class
    report: dict = {"target_precision": target_precision, "min_in_scope_sent_away": min_sent_away, "scores": {}}
    if method != "none":
        candidates = (SCORES if prototypes is not None and inside.embeddings is not None else LOGIT_SCORES) \
            if method == "auto" else (method,)
        for name in candidates:
            s_in, s_out = inside.scores(name, prototypes), outside.scores(name, prototypes)
            # out-of-scope ground truth: the separated examples, and those of the explicit class
            truly_out = np.r_[s_in[labels_in == oos_class], s_out]
            separation = auroc(s_in[labels_in != oos_class], truly_out) if len(truly_out) \
                else auroc(s_in[right], s_in[~right])
            threshold = precision_threshold(np.r_[s_in[kept_in], s_out[kept_out]],
                                            np.r_[right[kept_in], np.zeros(kept_out.sum(), dtype=bool)],
                                            target_precision)
            if min_sent_away > 0 and kept_in.any():  # give up at least this share of in-scope answers
                threshold = max(threshold, float(np.quantile(s_in[kept_in & (labels_in != oos_class)],
                                                             min_sent_away)))
            report["scores"][name] = {"auroc": separation, "threshold": threshold,
                                      "auroc_of": "out-of-scope vs in-scope" if len(truly_out) else "wrong vs right"}
        seen_out = any(v["auroc_of"] == "out-of-scope vs in-scope" for v in report["scores"].values())
        if seen_out or "mahalanobis" not in report["scores"]:
            chosen = max(report["scores"], key=lambda n: report["scores"][n]["auroc"] or 0.0)
        else:  # wrong-vs-right separation is not out-of-scope detection (see the module docstring)
            chosen = "mahalanobis"
        report["chosen_by"] = "dev AUROC" if chosen != "mahalanobis" or seen_out else \
            "no out-of-scope dev texts: the Mahalanobis distance"
        rule.method, rule.threshold = chosen, report["scores"][chosen]["threshold"]
        rule.prototypes = prototypes if chosen in EMBEDDING_SCORES else None
        report["chosen"] = chosen
    report["dev"] = out_of_scope_metrics(rule, inside, labels_in, outside, label_names)
    return rule, report


def out_of_scope_metrics(rule: OutOfScopeRule, inside, labels_in: np.ndarray, outside, label_names: list[str]
                         ) -> dict:
    """In-scope accuracy (right label and not sent away), out-of-scope recall and precision, AUROC of the rule's
    score, and how many in-scope texts were sent away. `inside`/`outside`: logits or `Outputs`."""
    inside, outside = _outputs(inside), _outputs(outside)
    oos_class = label_names.index(rule.label) if rule.explicit else -1
    in_scope = labels_in != oos_class
    flagged_in = rule.decide(inside.logits, label_names, inside.embeddings)
    flagged_out = rule.decide(outside.logits, label_names, outside.embeddings) if len(outside) \
        else np.zeros(0, dtype=bool)
    # with an explicit class, its own dev examples are out-of-scope ground truth too
    truly_out = np.r_[~in_scope, np.ones(len(flagged_out), dtype=bool)]
    flagged = np.r_[flagged_in, flagged_out]
    right_in = (inside.logits.argmax(axis=1) == labels_in) & ~flagged_in & in_scope
    metrics = {
        "in_scope_accuracy": float(right_in.sum() / max(in_scope.sum(), 1)),
        "in_scope_sent_away": float((flagged_in & in_scope).sum() / max(in_scope.sum(), 1)),
        "oos_examples": int(truly_out.sum()),
        "oos_recall": float((flagged & truly_out).sum() / truly_out.sum()) if truly_out.any() else None,
        "oos_precision": float((flagged & truly_out).sum() / flagged.sum()) if flagged.any() else None,
    }
    if rule.method is not None:
        s_in, s_out = inside.scores(rule.method, rule.prototypes), outside.scores(rule.method, rule.prototypes)
        metrics["auroc"] = auroc(s_in[in_scope], np.r_[s_in[~in_scope], s_out])
    elif rule.explicit:  # the explicit class's probability, negated, as the score
        probs = _softmax(np.r_[inside.logits, outside.logits] if len(outside) else inside.logits)
        score = 1.0 - probs[:, oos_class]
        metrics["auroc"] = auroc(score[~truly_out], score[truly_out])
    return metrics


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# ---- data and models: what training and evaluation call ----

def separate(data, label: str | None):
    """(the examples without `label`, those with it): out-of-scope examples a model has no class for."""
    if data is None or label is None:
        return data, None
    marked = [i for i, ex in enumerate(data.examples) if label in ex.labels]
    if not marked:
        return data, None
    keep = sorted(set(range(len(data))) - set(marked))
    return data.subset(keep), data.subset(marked)


PROTOTYPE_TEXTS = 20_000  # training texts the prototypes are measured on (a sample beyond): means and covariance
# of a 384-dimensional embedding settle long before


def outputs_of(model, features: list[dict], embeddings: bool = False) -> Outputs:
    """The logits (N, C) of encoded `features` through a loaded `goldmine.Model`, in their order, and their pooled
    embeddings (N, H) from the same forward pass when `embeddings`."""
    logits: list[np.ndarray | None] = [None] * len(features)
    vectors: list[np.ndarray | None] = [None] * len(features)
    for idx, batch_logits, batch_vectors in model.iter_outputs(features, embeddings):
        for row, i in enumerate(idx):
            logits[i] = batch_logits[row]
            if embeddings:
                vectors[i] = batch_vectors[row]
    if not features:
        return Outputs(np.zeros((0, len(model.labels)), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
                       if embeddings else None)
    return Outputs(np.stack(logits), np.stack(vectors) if embeddings else None)


def dev_outputs(model, in_scope, out_part, embeddings: bool = False) -> tuple[Outputs, np.ndarray, Outputs]:
    """(in-scope outputs, their label ids, out-of-scope outputs) of a data split and its separated part."""
    encoded = model.task.encode(in_scope)
    labels = np.asarray([int(f["labels"]) for f in encoded.features])
    outside = model.features([ex.text for ex in out_part.examples]) if out_part is not None else []
    return outputs_of(model, encoded.features, embeddings), labels, outputs_of(model, outside, embeddings)


def fit_prototypes(model, train, skip_label: str | None) -> Prototypes:
    """The class prototypes of a trained model: its pooled embeddings of (up to PROTOTYPE_TEXTS of) the training
    texts, per class."""
    import random

    if len(train) > PROTOTYPE_TEXTS:
        train = train.subset(sorted(random.Random(0).sample(range(len(train)), PROTOTYPE_TEXTS)))
    encoded = model.task.encode(train)
    labels = np.asarray([int(f["labels"]) for f in encoded.features])
    skip = model.labels.index(skip_label) if skip_label in model.labels else -1
    return Prototypes.fit(outputs_of(model, encoded.features, embeddings=True).embeddings, labels, skip)


def fit_inputs(model, dev, dev_out, train, label: str | None):
    """What a rule is fitted on: the model's outputs on dev (in scope, their labels, out of scope) and, when
    `train` is given, the class prototypes of its embeddings (None otherwise): (inside, labels_in, outside,
    prototypes). bench/fewshot.py fits every score at several settings on the same inputs."""
    prototypes = fit_prototypes(model, train, label) if train is not None else None
    inside, labels_in, outside = dev_outputs(model, dev, dev_out, embeddings=train is not None)
    return inside, labels_in, outside, prototypes


def fit_and_store(run_dir, dev, dev_out, config, batch_size: int = 64, train=None, model=None) -> dict:
    """Fit the rule on dev through the saved model, write it into the run's goldmine.json (an embedding score's
    prototypes, from `train`, into PROTOTYPES_FILE) and the report into out_of_scope.json; returns the report.
    `model` is that run already loaded (its rule, if any, is replaced by the new one), else it is loaded now."""
    import json

    from goldmine.errors import ConfigError
    from goldmine.inference.model import Model, RunMeta

    run_dir = Path(run_dir)
    if dev is None or not len(dev):
        raise ConfigError("out_of_scope: the threshold is fitted on dev data; give data.dev or a dev split share")
    model = model or Model.load(run_dir, batch_size=batch_size)
    model.task.out_of_scope = None  # fitted on the model's own answers, not on an earlier rule's
    embeds = model.has_embeddings and train is not None and len(train) > 0 and config.method in ("auto",
                                                                                                  *EMBEDDING_SCORES)
    if config.method in EMBEDDING_SCORES and not embeds:
        raise ConfigError(f"out_of_scope.method {config.method} measures distances between pooled embeddings: it "
                          "needs a classifier that pools one and training texts")
    inside, labels_in, outside, prototypes = fit_inputs(model, dev, dev_out, train if embeds else None, config.label)
    rule, report = fit_rule(inside, labels_in, outside, model.labels, config.method, config.target_precision,
                            config.label, config.fallback_label, prototypes, config.min_in_scope_sent_away)
    (run_dir / PROTOTYPES_FILE).unlink(missing_ok=True)
    if rule.prototypes is not None:
        rule.prototypes.save(run_dir / PROTOTYPES_FILE)
    meta = RunMeta.load(run_dir)
    meta.out_of_scope = rule.to_dict()
    meta.save(run_dir)
    model.meta.out_of_scope = meta.out_of_scope
    model.task.out_of_scope = OutOfScopeRule.from_dict(meta.out_of_scope, run_dir)  # as Model.load would set it
    report = {"rule": rule.to_dict(), **report}
    (run_dir / "out_of_scope.json").write_text(json.dumps(report, indent=2))
    return report


def evaluate_out_of_scope(model, in_scope, out_part) -> dict:
    """`out_of_scope_metrics` of a loaded model with a rule on a data split and its separated part."""
    rule = model.task.out_of_scope
    inside, labels_in, outside = dev_outputs(model, in_scope, out_part, embeddings=rule.needs_embeddings)
    return out_of_scope_metrics(rule, inside, labels_in, outside, model.labels)
