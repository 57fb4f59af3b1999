"""Out-of-scope: an intent model that can answer "none of these".

Users ask things no label covers. Two ways to notice, used alone or together:

- an explicit class: the training data has a label for out-of-scope texts (clinc150's `oos`); predicting it is
  answering "none of these".
- a score threshold: how sure the model is that a text is one of its labels, from its logits, compared with a
  threshold fitted on dev. Scores (higher = more in scope):
    max_probability  the top softmax probability (Hendrycks & Gimpel, 2017);
    energy           logsumexp of the logits, the negative free energy (Liu et al., "Energy-based Out-of-
                     distribution Detection", NeurIPS 2020): unlike the softmax it keeps how large the logits are.
  `auto` measures both on dev and keeps the one with the higher AUROC (out-of-scope dev examples against in-scope
  ones when dev has some; otherwise wrong answers against right ones).

The threshold is the lowest score at which in-scope precision on dev, P(the answer is right | it was given),
reaches `target_precision`: as many answers as possible, each as often right as the target says.

The rule is stored in the run's `goldmine.json` (`out_of_scope`), so it works on every runtime (it reads only
logits) and in every entry point: predictions carry `out_of_scope` and, when it is true, the fallback label
(the label the model would have given is kept as `closest_label`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SCORES = ("max_probability", "energy")


def in_scope_scores(logits: np.ndarray, method: str) -> np.ndarray:
    """(N,) how in-scope each row of logits (N, C) looks; higher is more in scope."""
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

    def decide(self, logits: np.ndarray, label_names: list[str]) -> np.ndarray:
        """(N,) True where a row of logits (N, C) is out of scope."""
        out = np.zeros(len(logits), dtype=bool)
        if self.method is not None and self.threshold is not None:
            out |= in_scope_scores(logits, self.method) < self.threshold
        if self.explicit and self.label in label_names:
            out |= np.asarray(logits).argmax(axis=1) == label_names.index(self.label)
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict | None) -> OutOfScopeRule | None:
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record}) if record else None


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


def fit_rule(logits_in: np.ndarray, labels_in: np.ndarray, logits_out: np.ndarray, label_names: list[str],
             method: str, target_precision: float, label: str | None, fallback: str | None
             ) -> tuple[OutOfScopeRule, dict]:
    """The rule fitted on dev: in-scope logits (N, C) with their true label ids, and out-of-scope logits (M, C)
    (M may be 0). Returns the rule and a report of every score measured."""
    explicit = label is not None and label in label_names
    rule = OutOfScopeRule(fallback_label=fallback or label or "out_of_scope", label=label, explicit=explicit)
    oos_class = label_names.index(label) if explicit else -1
    predicted_in, predicted_out = logits_in.argmax(axis=1), logits_out.argmax(axis=1) if len(logits_out) else []
    right = (predicted_in == labels_in) & (labels_in != oos_class)
    # examples that reach the threshold at all: those the explicit class (if any) did not already send away
    kept_in = predicted_in != oos_class
    kept_out = np.asarray(predicted_out) != oos_class if len(logits_out) else np.zeros(0, dtype=bool)
    report: dict = {"target_precision": target_precision, "scores": {}}
    if method != "none":
        for name in SCORES if method == "auto" else (method,):
            s_in, s_out = in_scope_scores(logits_in, name), in_scope_scores(logits_out, name) if len(logits_out) \
                else np.zeros(0)
            # out-of-scope ground truth: the separated examples, and those of the explicit class
            truly_out = np.r_[s_in[labels_in == oos_class], s_out]
            separation = auroc(s_in[labels_in != oos_class], truly_out) if len(truly_out) \
                else auroc(s_in[right], s_in[~right])
            threshold = precision_threshold(np.r_[s_in[kept_in], s_out[kept_out]],
                                            np.r_[right[kept_in], np.zeros(kept_out.sum(), dtype=bool)],
                                            target_precision)
            report["scores"][name] = {"auroc": separation, "threshold": threshold,
                                      "auroc_of": "out-of-scope vs in-scope" if len(truly_out) else "wrong vs right"}
        chosen = max(report["scores"], key=lambda n: report["scores"][n]["auroc"] or 0.0)
        rule.method, rule.threshold = chosen, report["scores"][chosen]["threshold"]
        report["chosen"] = chosen
    report["dev"] = out_of_scope_metrics(rule, logits_in, labels_in, logits_out, label_names)
    return rule, report


def out_of_scope_metrics(rule: OutOfScopeRule, logits_in: np.ndarray, labels_in: np.ndarray,
                         logits_out: np.ndarray, label_names: list[str]) -> dict:
    """In-scope accuracy (right label and not sent away), out-of-scope recall and precision, AUROC of the rule's
    score, and how many in-scope texts were sent away."""
    oos_class = label_names.index(rule.label) if rule.explicit else -1
    in_scope = labels_in != oos_class
    flagged_in = rule.decide(logits_in, label_names)
    flagged_out = rule.decide(logits_out, label_names) if len(logits_out) else np.zeros(0, dtype=bool)
    # with an explicit class, its own dev examples are out-of-scope ground truth too
    truly_out = np.r_[~in_scope, np.ones(len(flagged_out), dtype=bool)]
    flagged = np.r_[flagged_in, flagged_out]
    right_in = (logits_in.argmax(axis=1) == labels_in) & ~flagged_in & in_scope
    metrics = {
        "in_scope_accuracy": float(right_in.sum() / max(in_scope.sum(), 1)),
        "in_scope_sent_away": float((flagged_in & in_scope).sum() / max(in_scope.sum(), 1)),
        "oos_examples": int(truly_out.sum()),
        "oos_recall": float((flagged & truly_out).sum() / truly_out.sum()) if truly_out.any() else None,
        "oos_precision": float((flagged & truly_out).sum() / flagged.sum()) if flagged.any() else None,
    }
    if rule.method is not None:
        s_in = in_scope_scores(logits_in, rule.method)
        s_out = in_scope_scores(logits_out, rule.method) if len(logits_out) else np.zeros(0)
        metrics["auroc"] = auroc(s_in[in_scope], np.r_[s_in[~in_scope], s_out])
    elif rule.explicit:  # the explicit class's probability, negated, as the score
        probs = _softmax(np.r_[logits_in, logits_out] if len(logits_out) else logits_in)
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


def logits_of(model, features: list[dict]) -> np.ndarray:
    """(N, C) logits of encoded `features` through a loaded `goldmine.Model`, in their order."""
    rows: list[np.ndarray | None] = [None] * len(features)
    for idx, logits in model.iter_logits(features):
        for i, row in zip(idx, logits, strict=True):
            rows[i] = row
    return np.stack(rows) if rows else np.zeros((0, len(model.labels)), dtype=np.float32)


def dev_logits(model, in_scope, out_part) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(in-scope logits, their label ids, out-of-scope logits) of a data split and its separated part."""
    task = model.task
    encoded = task.encode(in_scope)
    labels = np.asarray([int(f["labels"]) for f in encoded.features])
    outside = logits_of(model, model.features([ex.text for ex in out_part.examples])) if out_part is not None \
        else np.zeros((0, len(task.label_names)), dtype=np.float32)
    return logits_of(model, encoded.features), labels, outside


def fit_and_store(run_dir, dev, dev_out, config, batch_size: int = 64) -> dict:
    """Fit the rule on dev through the saved model, write it into the run's goldmine.json and the report into
    out_of_scope.json; returns the report."""
    import json
    from pathlib import Path

    from goldmine.errors import ConfigError
    from goldmine.inference.model import Model, RunMeta

    run_dir = Path(run_dir)
    if dev is None or not len(dev):
        raise ConfigError("out_of_scope: the threshold is fitted on dev data; give data.dev or a dev split share")
    model = Model.load(run_dir, batch_size=batch_size)
    logits_in, labels_in, logits_out = dev_logits(model, dev, dev_out)
    rule, report = fit_rule(logits_in, labels_in, logits_out, model.labels, config.method, config.target_precision,
                            config.label, config.fallback_label)
    meta = RunMeta.load(run_dir)
    meta.out_of_scope = rule.to_dict()
    meta.save(run_dir)
    report = {"rule": rule.to_dict(), **report}
    (run_dir / "out_of_scope.json").write_text(json.dumps(report, indent=2))
    return report


def evaluate_out_of_scope(model, in_scope, out_part) -> dict:
    """`out_of_scope_metrics` of a loaded model with a rule on a data split and its separated part."""
    logits_in, labels_in, logits_out = dev_logits(model, in_scope, out_part)
    return out_of_scope_metrics(model.task.out_of_scope, logits_in, labels_in, logits_out, model.labels)
