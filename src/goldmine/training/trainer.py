"""The training recipe: setup -> train -> save -> evaluate before vs after. Read it top to bottom.

Built on transformers' Trainer: AdamW with linear warmup/decay, dynamic padding,
length-grouped batches, gradient accumulation, early stopping on a dev metric, checkpoints
and resume. Optional parts are callbacks, not flags threaded through the loop.

The same recipe runs under `torchrun` / `accelerate launch` with several processes (DDP). The Trainer
gives each process its own shard of the batches and gathers dev predictions from all of them before
computing metrics, so every process sees the same dev metric (and early stopping ends them at the same
step). `training.batch_size` is per process: one optimizer step consumes
batch_size x processes x gradient_accumulation examples. Only the main process writes the run directory.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, TrainingArguments, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from goldmine.config import TrainConfig, TrainingConfig
from goldmine.data.fingerprint import fingerprint
from goldmine.data.readers import read_file
from goldmine.data.report import quality_report
from goldmine.data.schema import DataKind
from goldmine.data.splits import load_splits, read_options
from goldmine.errors import ConfigError
from goldmine.evaluation.baselines import fit_probe, linear_probe, majority_baseline
from goldmine.evaluation.evaluate import evaluate
from goldmine.evaluation.plots import plot_training_curve
from goldmine.inference import out_of_scope
from goldmine.inference.model import Model, RunMeta
from goldmine.memory import peak_rss_mb
from goldmine.modeling.backbone import load_tokenizer
from goldmine.registry import STRATEGIES, TASKS
from goldmine.training.artifacts import save_model, versions, write_summary
from goldmine.training.callbacks import phase, tensorboard_callback
from goldmine.training.head_init import init_head_from_probe
from goldmine.training.weight_averaging import WeightAveraging
from goldmine.tuning.base import TuningMethod

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"


@dataclass
class TrainResult:
    """What a run produced: where, the fine-tuned test metrics, and the before-vs-after table."""

    output_dir: Path
    test_metrics: dict
    before_after: dict[str, dict[str, float]]
    train_seconds: float
    global_step: int
    data_warnings: list[str] = field(default_factory=list)
    main_process: bool = True  # False on the other processes of a distributed run: they write and measure nothing


def training_arguments(config: TrainConfig, metric: str | None, arguments_class: type = TrainingArguments,
                       **overrides) -> TrainingArguments:
    """The Trainer's arguments from `training.*` (`arguments_class`: a subclass such as sentence-transformers',
    `overrides`: what a recipe sets differently)."""
    t = config.training
    evaluate_during = t.eval_strategy != "none"
    on_cpu = not torch.cuda.is_available()
    settings = dict(
        output_dir=str(config.output_dir / CHECKPOINTS),
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a share of all steps
        weight_decay=t.weight_decay,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        train_sampling_strategy="group_by_length",
        eval_strategy=t.eval_strategy if evaluate_during else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps" if t.save_steps else (t.eval_strategy if evaluate_during else "epoch"),
        save_steps=t.save_steps or t.eval_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=evaluate_during,
        metric_for_best_model=metric if evaluate_during else None,
        greater_is_better=True,
        logging_steps=t.logging_steps,
        seed=t.seed,
        data_seed=t.seed,
        bf16=t.bf16,
        use_cpu=on_cpu,
        ddp_backend=_ddp_backend(on_cpu),
        # goldmine's task losses are batch means and ignore num_items_in_batch; left on, the Trainer would
        # multiply them by the number of processes (train and eval loss, and the gradients that clipping sees)
        average_tokens_across_devices=False,
        # accelerate's seedable sampler only replaces torch's RandomSampler: with it on, the length-grouped
        # sampler shuffles with each process's global RNG, which dropout moves apart, so from the second epoch on
        # the processes' shards overlap. Off, accelerate gives the sampler a generator it syncs every epoch.
        accelerator_config={"use_seedable_sampler": False},
        dataloader_num_workers=0,
        report_to="none",
        # the library prints nothing: no tqdm bar, and train() drops the PrinterCallback this installs instead;
        # a display is a callback (goldmine.training.progress), TensorBoard keeps every logged value
        disable_tqdm=True,
        # torch's fused AdamW (one kernel over all parameters, CPU too): on the MiniLM an optimizer step took
        # 21 ms against 125 ms for the per-parameter loop (foreach: 127 ms), ~20% of an sst2 training step
        optim="adamw_torch_fused",
    )
    return arguments_class(**(settings | overrides))


def train(config: TrainConfig, resume: bool = False, callbacks: list | None = None) -> TrainResult:
    """Fine-tune, save and evaluate one model as `config` says. `resume` continues from the last checkpoint.

    Prints nothing: `callbacks` may hold a display (`goldmine.training.progress.TrainingDisplay`), which also
    hears the phases around the Trainer (probe fit, training, test evaluation).

    Under a launcher every process runs this function; all of them train, only the main one saves and
    evaluates on test (the others return a `TrainResult` with `main_process=False` as soon as training ends).
    """
    # ---- setup: data, tokenizer, task, model ----
    t = config.training
    method = check_config(config)
    if TASKS.get(config.task).trains_itself:  # a task with a recipe of its own (retrieval)
        from goldmine.training.retrieval import train_retrieval

        return train_retrieval(config, resume, callbacks)
    if method.builds_model:
        return build_without_training(config, method, callbacks)
    checkpoint = _last_checkpoint(config.output_dir) if resume else None  # fail before loading anything
    set_seed(t.seed)
    task_cls = TASKS.get(config.task)
    splits = load_splits(config.data, multi_label=task_cls.multi_label or None,
                         out_of_scope_label=config.out_of_scope.label)
    for data in splits.values():
        task_cls.check_kind(data)
    full_test, held_out = splits["test"], _separate_out_of_scope(splits, config)
    base = task_cls.resolve_base(config.model.name)
    tokenizer = load_tokenizer(base)
    case_features = _case_features(config, tokenizer, base, method, task_cls)
    task = task_cls(
        task_cls.labels_from(splits["train"]), tokenizer, config.model.max_length,
        document_context=config.data.document_context, context_length=config.data.context_length,
        case_features=case_features,
    )
    report = quality_report(splits, _token_counter(tokenizer), config.model.max_length)
    for warning in report.warnings:
        log.warning("data: %s", warning)
    encoded = {name: task.encode(data) for name, data in splits.items() if len(data)}
    model = task.build_model(base, {"goldmine_pooling": config.model.pooling,
                                    "classifier_dropout": config.model.classifier_dropout})
    probe_row = None
    if _head_init(t, task) == "probe":  # LP-FT: the head starts as the probe fitted on the frozen pretrained encoder
        with phase(callbacks, "probe fit"):
            probe = fit_probe(task, model.base_model, config.model.pooling, splits["train"], encoded=encoded["train"])
            init_head_from_probe(model, probe)
            if t.linear_probe and len(splits["test"]):  # the baseline row is this very probe: score it now, once
                probe_row = probe.score(model.base_model, splits["test"], encoded=encoded["test"])
    model = method.apply(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / total)

    # ---- train ----
    metric = t.metric_for_best or task.default_metric
    weights = task.balanced_class_weights(splits["train"]) if t.class_weights == "balanced" else None
    extra_callbacks = [tensorboard_callback(config.output_dir / "logs"), *(callbacks or [])]
    if decay := _ema_decay(t, task):
        extra_callbacks.append(WeightAveraging(decay, resume_from=checkpoint))
    if t.early_stopping_patience and t.eval_strategy != "none":
        extra_callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=training_arguments(config, metric),
        train_dataset=_as_dataset(encoded["train"].features),
        eval_dataset=_as_dataset(encoded["dev"].features) if "dev" in encoded else None,
        data_collator=task.collator(),
        processing_class=tokenizer,
        compute_loss_func=task.loss_function(weights, t.label_smoothing),
        compute_metrics=lambda p: task.dev_metrics(p.predictions, p.label_ids),
        preprocess_logits_for_metrics=lambda logits, labels: task.reduce_logits(logits),
        callbacks=extra_callbacks,
    )
    # goldmine's task losses are batch means that ignore num_items_in_batch; a Trainer with a compute_loss_func
    # assumes the loss is already divided by the accumulation steps and would otherwise sum them (the logged loss,
    # and the gradients clipping sees, grew with training.gradient_accumulation)
    trainer.loss_is_scaled_for_ga = False
    for default in [cb for cb in trainer.callback_handler.callbacks if type(cb) is PrinterCallback]:
        if default not in extra_callbacks:  # the raw-dict printer disable_tqdm installs; one passed in stays
            trainer.remove_callback(default)
    if t.num_threads:  # after the Trainer: under a launcher without OMP_NUM_THREADS, accelerate sets its own count
        torch.set_num_threads(t.num_threads)
    started = time.perf_counter()
    with phase(callbacks, "training"):
        train_output = trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.perf_counter() - started
    if not trainer.is_world_process_zero():  # no collective runs after this, so returning early cannot deadlock
        return TrainResult(config.output_dir, {}, {}, train_seconds, trainer.state.global_step, main_process=False)

    # ---- save: everything predict / eval / serve need ----
    out = config.output_dir
    meta = RunMeta(
        task=task.name, label_names=task.label_names, base_model=config.model.name,
        strategy=config.tuning.strategy, pooling=config.model.pooling, max_length=config.model.max_length,
        document_context=config.data.document_context, context_length=config.data.context_length,
        case_features=case_features, pair=splits["train"].kind is DataKind.PAIR,
        adapter=method.adapter,
        extra={"fingerprint": fingerprint(splits, {k: _file_of(v.path) for k, v in splits.items()}),
               "versions": versions(), "train_seconds": round(train_seconds, 2),
               "global_step": trainer.state.global_step, "trainable_parameters": trainable,
               "total_parameters": total,
               "train_examples_per_second": train_output.metrics.get("train_samples_per_second"),
               "peak_rss_mb": peak_rss_mb()},  # the training process's high-water mark, before evaluation
    )
    save_model(trainer.model, tokenizer, meta, config, out, method)
    (out / "data_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    plot_training_curve(trainer.state.log_history, out / "training_curve.png")
    (out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=2))
    served = _finish_saved_run(out, config, task, splits, held_out, callbacks)

    # ---- evaluate: before vs after, on the same test data, through the serving path ----
    test = splits["test"]
    rows: dict[str, dict] = {}
    if len(test):
        with phase(callbacks, "test evaluation", total=2 + bool(t.linear_probe)) as advance:
            if task.evaluates_itself:  # before: the pretrained model, measured as the fine-tuned one is
                pretrained = Model(task.build_model(base, {}), task, meta, batch_size=t.eval_batch_size)
                rows["pretrained"] = evaluate(pretrained, full_test)
            else:
                rows["majority class"] = majority_baseline(task, splits["train"], test)
            advance()
            if t.linear_probe and not task.evaluates_itself:
                rows["pretrained + linear probe"] = probe_row or linear_probe(
                    task, base, config.model.pooling, splits["train"], test)
                advance()
            rows["fine-tuned"] = evaluate(served, full_test, out, prefix="test_")
            advance()
    table = write_summary(out, rows, "fine-tuned", f"{task.name} on {test.path}", trainer.state.best_metric, metric,
                          dict(train_output.metrics))
    return TrainResult(out, rows.get("fine-tuned", {}), table, train_seconds, trainer.state.global_step,
                       report.warnings)


def build_without_training(config: TrainConfig, method: TuningMethod, callbacks: list | None = None) -> TrainResult:
    """The recipe for a method that makes its model itself (zero-shot, few-shot): labels from the method or
    from `data.train`, then save and evaluate on test (`data.test`, or split off `data.train`) as `train` does,
    with the majority class and the pretrained encoder's linear probe as the "before" rows when there are training
    labels."""
    started = time.perf_counter()
    set_seed(config.training.seed)
    task_cls = TASKS.get(config.task)
    if config.data.train is not None:
        splits = load_splits(config.data, multi_label=task_cls.multi_label or None,
                             out_of_scope_label=config.out_of_scope.label)
    else:
        read = {name: read_file(path, read_options(config.data)) if path else None
                for name, path in (("dev", config.data.dev), ("test", config.data.test))}
        splits = {"train": None, **read}
    for data in filter(None, splits.values()):
        task_cls.check_kind(data)
    full_test, held_out = splits["test"], _separate_out_of_scope(splits, config)
    base = method.resolve_base(task_cls, config.model.name)
    tokenizer = load_tokenizer(base)
    labels = method.labels(config) or task_cls.labels_from(splits["train"])
    task = task_cls(labels, tokenizer, config.model.max_length)
    with phase(callbacks, "building the model"):
        model = method.build(task, base, config, splits["train"])
    seconds = time.perf_counter() - started
    out = config.output_dir
    meta = RunMeta(
        task=task.name, label_names=task.label_names, base_model=config.model.name, strategy=method.name,
        pooling="mean", max_length=config.model.max_length,
        extra={"versions": versions(), "train_seconds": round(seconds, 2), "global_step": 0,
               method.name: method.summary, "peak_rss_mb": peak_rss_mb()},
    )
    save_model(model, tokenizer, meta, config, out, method)
    served = _finish_saved_run(out, config, task, splits, held_out, callbacks)
    rows: dict[str, dict] = {}
    test = splits["test"]
    if test is not None and len(test):
        probe = splits["train"] is not None and config.training.linear_probe
        with phase(callbacks, "test evaluation", total=1 + (splits["train"] is not None) + probe) as advance:
            if splits["train"] is not None:
                rows["majority class"] = majority_baseline(task, splits["train"], test)
                advance()
            if probe:  # before: the pretrained encoder with a head fitted on the same examples
                rows["pretrained + linear probe"] = linear_probe(task, base, "mean", splits["train"], test)
                advance()
            rows[method.name] = evaluate(served, full_test, out, prefix="test_")
            advance()
    title = f"{task.name} ({method.name}) on {test.path}" if test is not None else ""
    table = write_summary(out, rows, method.name, title)
    return TrainResult(out, rows.get(method.name, {}), table, seconds, 0)


def _finish_saved_run(out: Path, config: TrainConfig, task, splits: dict, held_out: dict, callbacks) -> Model:
    """Load the saved run once, as it will be served, and complete it with that one model: the out-of-scope rule
    fitted on dev (when enabled; set on the loaded model too), then what the training inputs looked like for the
    server's drift tests (goldmine.monitoring.reference: single- and multi-label classifiers trained on labeled
    single texts, a few seconds for 256 embeddings). Returns the model the test evaluation then measures."""
    served = Model.load(out, batch_size=config.training.eval_batch_size)
    if config.out_of_scope.enabled:
        with phase(callbacks, "out-of-scope threshold"):
            out_of_scope.fit_and_store(out, splits["dev"], held_out.get("dev"), config.out_of_scope,
                                       train=splits["train"], model=served)
    train = splits["train"]
    if task.name in ("classification", "multilabel") and train is not None and len(train):
        from goldmine.monitoring.reference import write_reference

        with phase(callbacks, "drift reference"):
            write_reference(out, train, model=served)
    return served


def _separate_out_of_scope(splits: dict, config: TrainConfig) -> dict:
    """Take dev and test examples labeled `out_of_scope.label` out of `splits` when train has no such class (the
    model cannot encode a label it lacks); returns them by split name. Evaluation gets the whole test split and
    separates them itself."""
    label, train = config.out_of_scope.label, splits["train"]
    if label is None or (train is not None and label in train.label_names()):
        return {}
    held_out = {}
    for name in ("dev", "test"):
        splits[name], held_out[name] = out_of_scope.separate(splits[name], label)
    return held_out


def check_config(config: TrainConfig) -> TuningMethod:
    """The checks a config needs beyond its own fields, run before anything is loaded: the tuning method's
    (which needs the method's module) and checkpointing's. Returns the tuning method."""
    method = STRATEGIES.get(config.tuning.strategy)()
    method.check(config)
    _check_checkpointing(config.training)
    return method


def _case_features(config: TrainConfig, tokenizer, base: str, method: TuningMethod, task_cls) -> bool:
    """`data.case_features` as set, or when unset: on where the task reads case types and they pay off (NER),
    except under an adapter method such as LoRA (an adapter loads over the unchanged base model, whose token-type
    table has no case rows)."""
    if config.data.case_features is not None:
        return config.data.case_features
    return not method.adapter and task_cls.case_types_pay_off(tokenizer, base)


def _head_init(t: TrainingConfig, task) -> str:
    """'auto' is the task's own choice (`Task.default_head_init`): LP-FT for classification, a random head for
    NER."""
    return task.default_head_init if t.head_init == "auto" else t.head_init


def _ema_decay(t: TrainingConfig, task) -> float | None:
    """'auto' is the task's measured choice (`Task.default_ema_decay`): 0.99 for single-label classification,
    none where it was not measured."""
    return task.default_ema_decay if t.ema_decay == "auto" else t.ema_decay


def _ddp_backend(on_cpu: bool) -> str | None:
    """gloo for several CPU processes: left to itself accelerate takes MPI when torch was built with it, which
    fails under torchrun. None elsewhere: accelerate picks nccl on GPUs, and one process has no process group
    (naming a backend there would make accelerate look for one)."""
    return "gloo" if on_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None


def _as_dataset(features: list[dict]) -> Dataset:
    dataset = Dataset.from_list(features)
    return dataset.add_column("length", [len(f["input_ids"]) for f in features])


def _token_counter(tokenizer):
    return lambda texts: [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]


def _file_of(path: str) -> str | None:
    file = path.split("[", 1)[0]
    return file if Path(file).is_file() else None


def _check_checkpointing(t: TrainingConfig) -> None:
    """Keeping the best model needs a checkpoint at each evaluation; Trainer would fail late with a ValueError."""
    if t.eval_strategy == "none" or t.save_steps is None:
        return
    if t.eval_strategy == "epoch":
        raise ConfigError("training.save_steps: with eval_strategy=epoch checkpoints are saved at each evaluation; "
                          "leave save_steps unset, or use eval_strategy=steps")
    if t.save_steps % t.eval_steps:
        raise ConfigError(f"training.save_steps: must be a multiple of training.eval_steps ({t.eval_steps}) so "
                          f"that the best evaluated model has a checkpoint, got {t.save_steps}")


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint under `<output_dir>/checkpoints`, or None.

    The Trainer writes `trainer_state.json` last, so a checkpoint without a readable one was cut short (the
    process was killed while saving it) and is skipped: resuming from it would fail, the one before it is whole.
    """
    folder = output_dir / CHECKPOINTS
    complete = []
    for candidate in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if folder.is_dir() else ():
        step = candidate.name.rpartition("-")[2]
        try:
            json.loads((candidate / TRAINER_STATE_NAME).read_text())
        except (OSError, ValueError):
            continue
        if step.isdigit():
            complete.append((int(step), candidate))
    return max(complete)[1] if complete else None


def _last_checkpoint(output_dir: Path) -> str | None:
    checkpoint = last_checkpoint(output_dir)
    if checkpoint is None:
        raise ConfigError(f"--resume: no complete checkpoint found under {output_dir / CHECKPOINTS}")
    log.info("resuming from %s", checkpoint)
    return str(checkpoint)
