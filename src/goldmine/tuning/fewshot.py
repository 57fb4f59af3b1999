"""Few-shot classification: the SetFit recipe (contrastive tuning of the sentence encoder, then a light head),
with every pair of a batch used instead of a list of pairs.

SetFit (Tunstall et al., 2022) makes pairs of the labeled examples (same label: cosine target 1, different: 0),
tunes the encoder so cosine similarities match, then fits a logistic regression on the tuned embeddings. The
`setfit` package materialises the pair list and encodes both texts of every pair: with 200 labels the list
holds ~128M pairs and sampling it alone takes hours (setfit issues #249, #545). Here a batch is a set of texts
drawn *class-balanced* (labels drawn uniformly, `examples_per_label` of each, so a large class cannot crowd the
others out), each text is encoded once, and the loss runs over all B(B-1)/2 pairs inside it, positives and
negatives averaged separately so that both count equally whatever their numbers. The cost is set by the number
of steps, never by the number of possible pairs. Multi-label: a pair's target is the Jaccard overlap of the two
label sets.

The head is the task's probe classifier (logistic regression; one-vs-rest for multi-label) fitted on the tuned,
unit-length embeddings. The encoder has then seen those very examples, so the head's scores on them are surer
than on new text (setfit #479: uncalibrated probabilities); `calibrate` fits one temperature on out-of-fold
scores (the head refitted without each fold) and divides the head by it.

Last, encoder and head train together on the task's own loss for a few passes over the examples (SetFit's
end-to-end option, `end_to_end_passes`): the contrastive phase only asks same-label texts to be alike, this one
asks each text's embedding to sit where the head scores its label. On 1,000 held-out banking77 *train* texts (10
per intent, seed 0) it lifted accuracy from 0.847 to 0.865; bench/results/fewshot.md holds the dev figures. Where
the head already scores every example with certainty (sst2 at 8 per label: the loss over the examples is 0.0)
the phase has nothing to learn from and changes nothing.

The result is an ordinary goldmine run: a `PooledEncoderForSequenceClassification` with normalised mean pooling
and the fitted head, which `eval`, `export` (ONNX + parity gate), `predict` and `serve` take unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from goldmine.data.schema import DataKind, LabeledData
from goldmine.errors import ConfigError, DataError, DataIssue
from goldmine.modeling.sentence_embeddings import embed
from goldmine.registry import STRATEGIES
from goldmine.tuning.base import TuningMethod

# Auto steps stay within these. The cap was measured on banking77 (10 per intent, 770 examples, 1,000 held-out
# *train* texts, seed 0): 100 steps 0.857, 200 0.850, 400 0.836, and the untuned encoder with the same head 0.847;
# past ~100 steps the contrastive phase pulls the many classes' few examples too tight. sst2 (2 labels, 8-32 per
# label) never reaches it.
MIN_STEPS, MAX_STEPS = 30, 100


def label_sets(task, data: LabeledData) -> list[frozenset[int]]:
    return [frozenset(task.label2id[label] for label in ex.labels) for ex in data.examples]


def check_examples_per_label(data: LabeledData, label_names: list[str]) -> None:
    """Each label needs two examples (a positive pair); a lone one is reported at its line."""
    holders: dict[str, list] = {name: [] for name in label_names}
    for ex in data.examples:
        for label in ex.labels:
            holders[label].append(ex)
    lone = [DataIssue.at(examples[0].source, f"label {name!r} has only this example; few-shot needs at least 2 "
                                            "per label (a pair of the same label)")
            for name, examples in holders.items() if len(examples) == 1]
    if lone:
        raise DataError(lone, header=f"{data.path}: labels with a single example")


def class_balanced_batches(sets: list[frozenset[int]], num_labels: int, batch_size: int, per_label: int,
                           steps: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """`steps` batches of example indices: labels drawn uniformly without replacement, then up to `per_label`
    distinct examples of each (more when there are too few labels to fill the batch)."""
    holders = [np.array([i for i, s in enumerate(sets) if k in s]) for k in range(num_labels)]
    present = np.array([k for k in range(num_labels) if len(holders[k])])
    drawn_labels = min(len(present), max(2, batch_size // per_label))
    each = max(per_label, batch_size // drawn_labels)
    for _ in range(steps):
        chosen: set[int] = set()
        for k in rng.choice(present, size=drawn_labels, replace=False):
            members = holders[k]
            chosen.update(rng.choice(members, size=min(each, len(members)), replace=False).tolist())
        yield np.array(sorted(chosen))


def pair_targets(sets: list[frozenset[int]]) -> np.ndarray:
    """(N, N) cosine targets: the Jaccard overlap of two examples' label sets (1 or 0 for single labels)."""
    n = len(sets)
    targets = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        for j in range(i, n):
            targets[i, j] = targets[j, i] = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
    return targets


def pair_loss(embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared error between the cosine similarity of every pair of the batch and its target, positives and
    negatives averaged separately (unit-length `embeddings` (B, H), `targets` (B, B))."""
    similarity = embeddings @ embeddings.T
    off_diagonal = ~torch.eye(len(embeddings), dtype=torch.bool)
    error = (similarity - targets) ** 2
    parts = [error[mask].mean() for mask in (off_diagonal & (targets > 0), off_diagonal & (targets == 0))
             if mask.any()]
    return torch.stack(parts).sum()


def auto_steps(examples: int, batch_size: int, passes: float) -> int:
    return int(min(MAX_STEPS, max(MIN_STEPS, math.ceil(passes * examples / batch_size))))


def tune_encoder(model: nn.Module, tokenizer, texts: list[str], sets: list[frozenset[int]], num_labels: int,
                 fs, max_length: int, seed: int) -> dict:
    """Contrastive steps on the encoder of `model` (the head is left alone); returns what was done."""
    from transformers import get_linear_schedule_with_warmup

    steps = fs.steps or auto_steps(len(texts), fs.batch_size, fs.passes)
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    features = [{k: encoded[k][i] for k in encoded} for i in range(len(texts))]
    targets = torch.from_numpy(pair_targets(sets))
    parameters = [p for name, p in model.named_parameters() if name.startswith(model.base_model_prefix + ".")]
    decay = [p for p in parameters if p.ndim > 1]
    no_decay = [p for p in parameters if p.ndim <= 1]  # biases and LayerNorm weights, as the Trainer does
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=fs.learning_rate, fused=True)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * steps), steps)
    rng = np.random.default_rng(seed)
    model.train()
    losses, pairs = [], 0
    for idx in class_balanced_batches(sets, num_labels, fs.batch_size, fs.examples_per_label, steps, rng):
        batch = tokenizer.pad([features[i] for i in idx], return_tensors="pt")
        loss = pair_loss(model.embed(**batch), targets[idx][:, idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        pairs += len(idx) * (len(idx) - 1) // 2
    model.eval()
    return {"steps": steps, "pairs_scored": pairs, "loss_first": round(losses[0], 5),
            "loss_last": round(float(np.mean(losses[-5:])), 5)}


def end_to_end_steps(examples: int, batch_size: int, passes: float) -> int:
    return math.ceil(passes * examples / batch_size) if passes else 0


def length_grouped_batches(lengths: np.ndarray, batch_size: int, steps: int, rng: np.random.Generator
                           ) -> Iterator[np.ndarray]:
    """`steps` batches of example indices, pass after pass over a shuffled order; inside each run of 8 batches the
    examples are sorted by length, so a batch pads little (as the Trainer's group_by_length does), and the
    batches are then shuffled."""
    made = 0
    while True:
        order = rng.permutation(len(lengths))
        batches = []
        for start in range(0, len(order), 8 * batch_size):
            chunk = order[start: start + 8 * batch_size]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            batches += [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
        for b in rng.permutation(len(batches)):
            if made == steps:
                return
            yield batches[b]
            made += 1


def train_end_to_end(model: nn.Module, task, train: LabeledData, fs, seed: int) -> dict:
    """Encoder and head trained together on the task's loss (cross-entropy, or binary for multi-label), the head
    at its own, higher learning rate since it starts from the fitted one; returns what was done, with the loss
    over all the examples before and after."""
    from transformers import get_linear_schedule_with_warmup

    features = task.encode(train).features
    steps = end_to_end_steps(len(features), fs.batch_size, fs.end_to_end_passes)
    if not steps:
        return {"end_to_end_steps": 0}
    collate, loss_function = task.collator(), task.loss_function(None, 0.0)
    lengths = np.array([len(f["input_ids"]) for f in features])

    def loss_on(batch_indices) -> torch.Tensor:
        batch = collate([features[i] for i in batch_indices])
        labels = batch.pop("labels")
        return loss_function(model(**batch), labels)

    def mean_loss() -> float:
        order = np.argsort(lengths, kind="stable")
        with torch.no_grad():
            return float(sum(loss_on(order[i: i + 64]).item() * len(order[i: i + 64])
                             for i in range(0, len(order), 64)) / len(order))

    body = [p for name, p in model.named_parameters() if name.startswith(model.base_model_prefix + ".")]
    head = list(model.classifier.parameters())
    groups = [{"params": [p for p in body if p.ndim > 1], "lr": fs.end_to_end_learning_rate, "weight_decay": 0.01},
              {"params": [p for p in body if p.ndim <= 1], "lr": fs.end_to_end_learning_rate, "weight_decay": 0.0},
              {"params": head, "lr": fs.end_to_end_head_learning_rate, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, fused=True)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * steps), steps)
    started = time.perf_counter()
    model.eval()
    before = mean_loss()
    model.train()
    for idx in length_grouped_batches(lengths, fs.batch_size, steps, np.random.default_rng(seed)):
        loss_on(idx).backward()
        torch.nn.utils.clip_grad_norm_(body + head, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    return {"end_to_end_steps": steps, "end_to_end_seconds": round(time.perf_counter() - started, 2),
            "end_to_end_loss_before": round(before, 5), "end_to_end_loss_after": round(mean_loss(), 5)}


def fit_head(task, vectors: np.ndarray, sets: list[frozenset[int]], c: float = 10.0):
    """The task's probe classifier with inverse L2 strength `c`, fitted on `vectors`: single-label indices, or a
    label indicator matrix."""
    from goldmine.evaluation.baselines import LinearProbe

    if task.multi_label:
        targets = np.zeros((len(sets), task.num_labels), dtype=int)
        for i, s in enumerate(sets):
            targets[i, list(s)] = 1
    else:
        targets = np.array([next(iter(s)) for s in sets])
    classifier = task.probe_classifier()
    classifier.set_params(**{"estimator__C" if "estimator__C" in classifier.get_params() else "C": c})
    classifier.fit(vectors, targets)
    return LinearProbe(task, "mean", classifier).head_weights()


def out_of_fold_logits(task, vectors: np.ndarray, sets: list[frozenset[int]], seed: int, c: float = 10.0
                       ) -> np.ndarray | None:
    """(N, C) head logits of each example from a head fitted without its fold (single-label; None when a fold
    split is impossible: a label with fewer than 2 examples)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.array([next(iter(s)) for s in sets])
    counts = np.bincount(labels)
    folds = min(5, int(counts[counts > 0].min()))
    if folds < 2:
        return None
    logits = np.zeros((len(labels), task.num_labels))
    for fit_idx, held_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(vectors, labels):
        weight, bias = fit_head(task, vectors[fit_idx], [sets[i] for i in fit_idx], c)
        logits[held_idx] = vectors[held_idx] @ weight.T + bias
    return logits


def _log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return float(-(shifted[np.arange(len(labels)), labels] - np.log(np.exp(shifted).sum(axis=1))).mean())


def fit_temperature_and_prior(head_logits: np.ndarray, prior_logits: np.ndarray | None, labels: np.ndarray
                              ) -> tuple[float, float]:
    """(temperature, prior weight) minimising the log loss of head_logits / T + w x prior_logits on out-of-fold
    scores; w is 0 without a prior. Both bounded (T in [e^-3, e^3], w in [0, 2])."""
    from scipy.optimize import minimize

    if prior_logits is None:
        from scipy.optimize import minimize_scalar

        found = minimize_scalar(lambda t: _log_loss(head_logits / math.exp(t), labels), bounds=(-3.0, 3.0),
                                method="bounded")
        return math.exp(found.x), 0.0
    found = minimize(lambda p: _log_loss(head_logits / math.exp(p[0]) + p[1] * prior_logits, labels),
                     x0=np.array([0.0, 0.5]), bounds=[(-3.0, 3.0), (0.0, 2.0)], method="L-BFGS-B")
    return math.exp(found.x[0]), float(found.x[1])


@STRATEGIES.register("fewshot")
class FewShot(TuningMethod):
    """Tunes the encoder contrastively on class-balanced batches, fits a logistic-regression head, then trains
    both together for a few passes."""

    name = "fewshot"
    builds_model = True

    def check(self, config) -> None:
        if config.task not in ("classification", "multilabel"):
            raise ConfigError(f"tuning.strategy fewshot: is for classification and multilabel, not {config.task}")
        if config.data.train is None:
            raise ConfigError("tuning.strategy fewshot: learns from labeled examples (--train FILE)")

    def apply(self, model: nn.Module, config) -> nn.Module:
        raise ConfigError("tuning.strategy fewshot: builds its model itself (see build)")

    def build(self, task, base: str, config, train: LabeledData | None) -> nn.Module:
        if train.kind is not DataKind.TEXT:
            raise ConfigError(f"tuning.strategy fewshot: classifies single texts; {train.path} holds "
                              f"{train.kind.value} data (pairs: use the full strategy)")
        check_examples_per_label(train, task.label_names)
        fs = config.tuning.fewshot
        model = task.build_model(base, {"goldmine_pooling": "mean", "goldmine_normalize": True,
                                        "classifier_dropout": 0.0})
        texts, sets = [ex.text for ex in train.examples], label_sets(task, train)
        started = time.perf_counter()
        tuned = tune_encoder(model, task.tokenizer, texts, sets, task.num_labels, fs, task.max_length,
                             config.training.seed)
        tuned["contrastive_seconds"] = round(time.perf_counter() - started, 2)
        vectors = embed(model, task.tokenizer, texts, task.max_length)
        weight, bias = fit_head(task, vectors, sets, fs.head_c)
        temperature, prior_weight = 1.0, 0.0
        prior = self._prior(model, task, fs, train) if fs.labels is not None and not task.multi_label else None
        if (fs.calibrate or prior is not None) and not task.multi_label:
            oof = out_of_fold_logits(task, vectors, sets, config.training.seed, fs.head_c)
            if oof is not None:
                labels = np.array([next(iter(s)) for s in sets])
                prior_logits = None if prior is None else vectors @ prior[0].T + prior[1]
                temperature, prior_weight = fit_temperature_and_prior(oof, prior_logits, labels)
                if not fs.calibrate:  # the prior's weight is fitted with a temperature, which is then left out
                    temperature = 1.0
        weight, bias = weight / temperature, bias / temperature
        if prior is not None:  # both heads read the same unit-length embedding: their sum is one linear head
            weight, bias = weight + prior_weight * prior[0], bias + prior_weight * prior[1]
        with torch.no_grad():
            model.classifier.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            model.classifier.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        tuned |= train_end_to_end(model, task, train, fs, config.training.seed)
        self.summary = {**tuned, "examples": len(texts), "batch_size": fs.batch_size,
                        "examples_per_label": fs.examples_per_label, "learning_rate": fs.learning_rate,
                        "head_c": fs.head_c,
                        "temperature": round(temperature, 4), "label_prior_weight": round(prior_weight, 4),
                        "label_file": str(fs.labels) if fs.labels else None}
        return model

    @staticmethod
    def _prior(model: nn.Module, task, fs, train: LabeledData) -> tuple[np.ndarray, np.ndarray]:
        """(rows (C, H), bias (C,)) of the zero-shot head from the label file's texts, embedded by the tuned
        encoder, in the task's label order (`goldmine.tuning.zeroshot`: scale x cosine, content-free
        calibration)."""
        from goldmine.tuning.zeroshot import (
            CONTENT_FREE,
            ZERO_SHOT_SCALE,
            calibration_bias,
            check_examples,
            prototype_rows,
            read_label_file,
        )

        specs = read_label_file(fs.labels)
        check_examples(train, specs, fs.labels)
        by_name = {spec.name: spec for spec in specs}
        if missing := [name for name in task.label_names if name not in by_name]:
            raise ConfigError(f"{fs.labels}: no entry for labels {missing} of {train.path}")
        ordered = [by_name[name] for name in task.label_names]
        texts = [(k, text) for k, spec in enumerate(ordered) for text in spec.texts()]
        vectors = embed(model, task.tokenizer, [t for _, t in texts] + list(CONTENT_FREE), task.max_length)
        rows = prototype_rows(vectors[: len(texts)], np.array([k for k, _ in texts]), len(ordered))
        bias = calibration_bias(vectors[len(texts):], rows, ZERO_SHOT_SCALE)
        return ZERO_SHOT_SCALE * rows, bias
