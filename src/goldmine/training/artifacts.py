"""Writing a run directory: the model (or LoRA adapter), tokenizer, label maps, config and metadata.

A full model loads with `AutoModelFor<Task>.from_pretrained(dir, trust_remote_code=True)`.
A LoRA run directory holds the adapter, the task config and (classification) `pooled_classifier.py`,
so it loads with plain transformers + peft over the base model it was trained from:

    config = AutoConfig.from_pretrained(run_dir, trust_remote_code=True)
    cls = get_class_from_dynamic_module(config.auto_map["AutoModelForSequenceClassification"], run_dir)
    # (NER: cls = AutoModelForTokenClassification)
    base = cls.from_pretrained(PeftConfig.from_pretrained(run_dir).base_model_name_or_path, config=config)
    model = PeftModel.from_pretrained(base, run_dir)

(`get_class_from_dynamic_module` is in `transformers.dynamic_module_utils`.) With `lora.merge`,
`run_dir/merged` is a full model as above. Both kinds load with `goldmine.Model.load(dir)`.
"""

from __future__ import annotations

import contextlib
import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from goldmine.config import TrainConfig
from goldmine.inference.model import RunMeta
from goldmine.modeling.pooled_classifier import PooledEncoderForSequenceClassification
from goldmine.tuning.base import TuningMethod


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("goldmine", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


def save_model(model, tokenizer, meta: RunMeta, config: TrainConfig, out: Path, method: TuningMethod) -> None:
    """The run directory: the weights as the tuning method saves them, tokenizer, metadata, config, label maps."""
    out.mkdir(parents=True, exist_ok=True)
    PooledEncoderForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    method.save(model, tokenizer, out, config)
    tokenizer.save_pretrained(out)
    meta.save(out)
    config.to_yaml(out / "config.yaml")
    names = meta.label_names
    labels = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    (out / "labels.json").write_text(json.dumps(labels, indent=2))


def write_summary(out: Path, rows: dict[str, dict], after: str, title: str, best_dev: float | None = None,
                  metric_for_best: str | None = None, train: dict | None = None) -> dict[str, dict[str, float]]:
    """The run's `metrics.json` (the before-vs-after table, the `after` row's full test metrics, the best dev
    metric, the training summary) and `before_after.md`; returns the table. Every training recipe ends with it."""
    from goldmine.evaluation.comparison import as_markdown, before_after

    table = before_after(rows) if rows else {}
    summary = {"before_after": table, "test": rows.get(after, {}), "best_dev": best_dev,
               "metric_for_best": metric_for_best, "train": train or {}}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    if table:
        (out / "before_after.md").write_text(as_markdown(table, title))
    return table
