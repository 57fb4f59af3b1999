"""The recipe of `task: retrieval`: fine-tune a bi-encoder on matching pairs with in-batch and hard negatives.

    setup -> the pretrained encoder's scores (before) -> hard negatives -> train -> save -> evaluate (after)

Training runs in sentence-transformers (its trainer is the transformers Trainer: warmup, weight decay, gradient
accumulation, checkpoints and resume, early stopping, DDP under a launcher, all from `training.*`):

- Loss: MultipleNegativesRankingLoss. In a batch of (query, match, hard negative) rows, each query must rank its own
  match above every other text of the batch, the other rows' matches and every hard negative: cross-entropy over
  `retrieval.scale` x cosine similarity. A batch of B rows gives every query 2B - 1 negatives for the price of
  encoding 3B texts.
- Batches: the no-duplicates sampler, so a text never shows up as a negative of the query it matches.
- Hard negatives: the near misses the data labels (other pairs of the same first text); a match without one gets
  the most similar non-matching second text the pretrained encoder finds (sentence-transformers'
  `mine_hard_negatives`, at most 95% of the match's own similarity so that unlabeled matches are not taken as
  negatives); where mining finds nothing a random non-matching second text stands in. The counts are recorded.
- Dev: MRR@10 of dev queries over the dev corpus (sentence-transformers' InformationRetrievalEvaluator), which picks
  the best checkpoint and stops early.

The encoder is then saved as goldmine's pooled encoder (`goldmine.tasks.retrieval`). The match threshold of
`predict` is fitted on dev pairs through the saved model, and the test rows are measured as `goldmine eval`
measures them: the pretrained encoder (before) and the fine-tuned one (after) on the same test pairs.
"""

from __future__ import annotations

import json
import logging
import random
import time
from typing import TYPE_CHECKING

import torch
from transformers import EarlyStoppingCallback, PrinterCallback, set_seed

from goldmine.data.fingerprint import fingerprint
from goldmine.data.report import quality_report
from goldmine.data.schema import LabeledData
from goldmine.data.splits import load_splits
from goldmine.errors import ConfigError
from goldmine.evaluation.evaluate import evaluate
from goldmine.evaluation.plots import plot_training_curve
from goldmine.inference.model import Model, RunMeta
from goldmine.memory import peak_rss_mb
from goldmine.modeling.backbone import load_tokenizer, resolve_base_model
from goldmine.modeling.sentence_embeddings import unit
from goldmine.registry import STRATEGIES
from goldmine.tasks.retrieval import (
    SIMILARITY,
    Retrieval,
    SearchProblem,
    embedded,
    match_threshold,
    pair_similarities,
    positive_label,
    search_metrics,
)
from goldmine.training.artifacts import save_model, versions, write_summary
from goldmine.training.callbacks import phase, tensorboard_callback

if TYPE_CHECKING:
    from goldmine.config import TrainConfig

log = logging.getLogger(__name__)
DEV_METRIC = "eval_dev_cosine_mrr@10"  # what the dev evaluator (named "dev") reports as MRR@10
MINING_MARGIN = 0.05  # a mined negative scores at most (1 - margin) x its query's match


def sentence_encoder(base: str, max_length: int):
    """The pretrained encoder as a sentence-transformers model: mean pooling, unit length (what goldmine's pooled
    encoder computes with `goldmine_normalize`)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(base, max_seq_length=max_length)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")


def encoder_embed(encoder):
    """texts -> unit vectors through a sentence-transformers model."""
    return lambda texts: encoder.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)


def training_rows(data: LabeledData, positive: str, encoder, seed: int) -> tuple[dict[str, list[str]], dict]:
    """(anchor, positive[, negative]) columns of the training set and what was done for the negatives.

    Every match is a row. Its negative is a near miss the data labels for the same first text when there is one;
    else, with `encoder`, a mined one; else (nothing mined, or mining off while other rows have labeled negatives)
    a random non-matching second text. Without labeled negatives and without mining there is no negative column:
    in-batch negatives alone."""
    rng = random.Random(seed)
    matches: list[tuple[str, str]] = []
    labeled_negatives: dict[str, list[str]] = {}
    matched: dict[str, set[str]] = {}
    for ex in data.examples:
        if positive in ex.labels:
            matches.append((ex.text, ex.text_b))
            matched.setdefault(ex.text, set()).add(ex.text_b)
        else:
            labeled_negatives.setdefault(ex.text, []).append(ex.text_b)
    columns = {"anchor": [a for a, _ in matches], "positive": [b for _, b in matches]}
    record = {"matches": len(matches), "labeled": 0, "mined": 0, "random": 0}
    if not labeled_negatives and encoder is None:
        return columns, record | {"negatives": "in-batch only"}
    negatives: list[str | None] = [None] * len(matches)
    for i, (anchor, _) in enumerate(matches):
        if labeled_negatives.get(anchor):
            negatives[i] = rng.choice(labeled_negatives[anchor])
            record["labeled"] += 1
    missing = [i for i, n in enumerate(negatives) if n is None]
    corpus = sorted({ex.text_b for ex in data.examples})
    if missing and encoder is not None:
        for i, negative in mine_negatives([matches[i] for i in missing], corpus, matched, encoder).items():
            negatives[missing[i]] = negative
            record["mined"] += 1
    for i, (anchor, _) in enumerate(matches):
        if negatives[i] is None:
            choices = [t for t in rng.sample(corpus, min(len(corpus), 20)) if t not in matched[anchor]]
            negatives[i] = choices[0] if choices else rng.choice(corpus)
            record["random"] += 1
    return columns | {"negative": negatives}, record


def mine_negatives(pairs: list[tuple[str, str]], corpus: list[str], matched: dict[str, set[str]],
                   encoder) -> dict[int, str]:
    """{row of `pairs`: its mined hard negative}: the most similar second text that is not one of the query's
    matches and scores below (1 - MINING_MARGIN) x the match (sentence-transformers' mine_hard_negatives)."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    rows = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
    mined = mine_hard_negatives(rows, encoder, anchor_column_name="anchor", positive_column_name="positive",
                                corpus=corpus, relative_margin=MINING_MARGIN, num_negatives=1,
                                sampling_strategy="top", output_format="triplet", batch_size=64, verbose=False)
    found: dict[tuple[str, str], str] = {}
    for row in mined:
        if row["negative"] not in matched.get(row["anchor"], ()):
            found.setdefault((row["anchor"], row["positive"]), row["negative"])
    return {i: found[pair] for i, pair in enumerate(pairs) if pair in found}


def dev_evaluator(problem: SearchProblem, batch_size: int):
    """MRR@10 (and the rest) of the dev queries over the dev corpus, as sentence-transformers computes it."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    return InformationRetrievalEvaluator(
        queries={f"q{i}": q for i, q in enumerate(problem.queries)},
        corpus={f"d{i}": d for i, d in enumerate(problem.corpus)},
        relevant_docs={f"q{i}": {f"d{j}" for j in rows} for i, rows in enumerate(problem.relevant)},
        name="dev", batch_size=batch_size, write_csv=False, show_progress_bar=False)


def fit_match_threshold(embed, problem: SearchProblem | None) -> float | None:
    if problem is None or not problem.pairs:
        return None
    similarities, matches = pair_similarities(embedded(embed, [t for a, b, _ in problem.pairs for t in (a, b)]),
                                              problem.pairs)
    return match_threshold(similarities, matches)


def train_retrieval(config: TrainConfig, resume: bool = False, callbacks: list | None = None):
    """Fine-tune, save and evaluate one retrieval model as `config` says (see the module docstring)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.model_card import BaseModelCardCallback
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from goldmine.training.trainer import TrainResult, _file_of, _last_checkpoint, _token_counter, training_arguments

    t = config.training
    checkpoint = _last_checkpoint(config.output_dir) if resume else None
    set_seed(t.seed)
    splits = load_splits(config.data)
    for data in splits.values():
        Retrieval.check_kind(data)
    positive = positive_label(splits["train"].label_names(), config.retrieval.positive_label, splits["train"].path)
    problems = {name: SearchProblem.from_pairs(data, positive) for name, data in splits.items() if len(data)}
    base = resolve_base_model(config.model.name)
    tokenizer = load_tokenizer(base)
    report = quality_report(splits, _token_counter(tokenizer), config.model.max_length)
    encoder = sentence_encoder(base, config.model.max_length)
    before = encoder_embed(encoder)

    rows: dict[str, dict] = {}
    if "test" in problems and problems["test"].queries:  # before: the pretrained encoder, threshold fitted on dev
        with phase(callbacks, "pretrained encoder on test"):
            rows["pretrained encoder"] = search_metrics(before, problems["test"],
                                                        fit_match_threshold(before, problems.get("dev")))
    with phase(callbacks, "hard negatives"):
        columns, negatives = training_rows(splits["train"], positive,
                                           encoder if config.retrieval.mine_negatives else None, t.seed)

    dev = problems.get("dev")
    evaluator = dev_evaluator(dev, t.eval_batch_size) if dev is not None and dev.queries and \
        t.eval_strategy != "none" else None
    metric = DEV_METRIC if evaluator else None
    if evaluator is None and t.eval_strategy != "none":
        config = config.model_copy(update={"training": t.model_copy(update={"eval_strategy": "none"})})
    args = training_arguments(config, metric, SentenceTransformerTrainingArguments,
                              batch_sampler=BatchSamplers.NO_DUPLICATES, train_sampling_strategy="random")
    extra_callbacks = [tensorboard_callback(config.output_dir / "logs"), *(callbacks or [])]
    if evaluator and t.early_stopping_patience:
        extra_callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    trainer = SentenceTransformerTrainer(
        model=encoder, args=args, train_dataset=Dataset.from_dict(columns), evaluator=evaluator,
        loss=MultipleNegativesRankingLoss(encoder, scale=config.retrieval.scale), callbacks=extra_callbacks)
    for default in [cb for cb in trainer.callback_handler.callbacks if type(cb) is PrinterCallback or
                    isinstance(cb, BaseModelCardCallback)]:  # the raw-dict printer; a Hub model card per checkpoint
        if default not in extra_callbacks:
            trainer.remove_callback(default)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    started = time.perf_counter()
    with phase(callbacks, "training"):
        output = trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.perf_counter() - started
    if not trainer.is_world_process_zero():
        return TrainResult(config.output_dir, {}, {}, train_seconds, trainer.state.global_step, main_process=False)

    # ---- save as goldmine's pooled encoder, with the match threshold fitted on dev through it ----
    out = config.output_dir
    task = Retrieval([SIMILARITY], tokenizer, config.model.max_length)
    meta = save_encoder(pooled_network(task, base, encoder), tokenizer, config, extra={
        "fingerprint": fingerprint(splits, {k: _file_of(v.path) for k, v in splits.items()}),
        "versions": versions(), "train_seconds": round(train_seconds, 2),
        "global_step": trainer.state.global_step,
        "train_examples_per_second": output.metrics.get("train_samples_per_second"),
        "peak_rss_mb": peak_rss_mb(),
        "retrieval": {"positive_label": positive, "hard_negatives": negatives,
                      "scale": config.retrieval.scale, "match_threshold": None}})
    served = Model.load(out, batch_size=t.eval_batch_size)
    threshold = fit_match_threshold(lambda texts: unit(served.embed(texts)), problems.get("dev"))
    meta.extra["retrieval"]["match_threshold"] = threshold
    meta.save(out)
    served.meta.extra["retrieval"]["match_threshold"] = threshold  # the loaded model evaluates test below
    (out / "data_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    plot_training_curve(trainer.state.log_history, out / "training_curve.png")
    (out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=2))

    if "pretrained encoder" in rows:
        with phase(callbacks, "test evaluation"):
            rows["fine-tuned"] = evaluate(served, splits["test"], out, prefix="test_")
    table = write_summary(out, rows, "fine-tuned", f"retrieval on {splits['test'].path}", trainer.state.best_metric,
                          metric, dict(output.metrics))
    return TrainResult(out, rows.get("fine-tuned", {}), table, train_seconds, trainer.state.global_step,
                       report.warnings)


def save_encoder(network: torch.nn.Module, tokenizer, config: TrainConfig, extra: dict) -> RunMeta:
    """Write a pooled encoder (`pooled_network`) to `config.output_dir` as a goldmine retrieval model: the run
    directory `Model.load`, `Index.build`, export and serving read. Returns its metadata."""
    meta = RunMeta(task=Retrieval.name, label_names=[SIMILARITY], base_model=config.model.name, strategy="full",
                   pooling="mean", max_length=config.model.max_length, extra=extra)
    save_model(network, tokenizer, meta, config, config.output_dir, STRATEGIES.get("full")())
    return meta


def save_pretrained_encoder(config: TrainConfig) -> RunMeta:
    """`config.model.name` (the bundled encoder, a directory or a hub name) as it is, untrained, saved to
    `config.output_dir` as a goldmine retrieval model: the "before" of a fine-tuned encoder, searchable through
    the same index and runtime (no match threshold: nothing was fitted)."""
    if config.task != "retrieval":
        raise ConfigError(f"task: a pretrained encoder is saved as task retrieval, not {config.task!r}")
    base = resolve_base_model(config.model.name)
    tokenizer = load_tokenizer(base)
    network = pooled_network(Retrieval([SIMILARITY], tokenizer, config.model.max_length), base)
    return save_encoder(network, tokenizer, config, extra={
        "versions": versions(), "train_seconds": 0.0, "global_step": 0, "pretrained": True,
        "retrieval": {"positive_label": None, "hard_negatives": None, "scale": config.retrieval.scale,
                      "match_threshold": None}})


def pooled_network(task: Retrieval, base: str, encoder=None) -> torch.nn.Module:
    """goldmine's pooled encoder (mean pooling, unit length) carrying the weights of `encoder`'s transformer (a
    trained sentence-transformers model), or `base`'s own when `encoder` is None; its one-output head is zero
    (nothing reads it)."""
    network = task.build_model(base, {"goldmine_pooling": "mean", "goldmine_normalize": True,
                                      "classifier_dropout": 0.0})
    if encoder is not None:
        trained = encoder[0].auto_model.state_dict()
        backbone = getattr(network, network.base_model_prefix)
        wanted = backbone.state_dict()
        if missing := sorted(set(wanted) - set(trained)):
            raise RuntimeError(f"the trained encoder lacks weights the pooled network needs: {missing[:5]}")
        backbone.load_state_dict({k: trained[k] for k in wanted})
    with torch.no_grad():
        network.classifier.weight.zero_()
        network.classifier.bias.zero_()
    return network.eval()

