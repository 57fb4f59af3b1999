"""Writing a run directory: the model (or LoRA adapter), tokenizer, label maps, config and metadata.

A full model loads with `AutoModelFor<Task>.from_pretrained(dir, trust_remote_code=True)`;
a LoRA adapter with `PeftModel.from_pretrained(base, dir)`. Both load with `goldmine.Model.load(dir)`.
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from goldmine.config import TrainConfig
from goldmine.inference.model import RunMeta
from goldmine.modeling.pooled_classifier import PooledEncoderForSequenceClassification


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("goldmine", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def save_model(model, tokenizer, meta: RunMeta, config: TrainConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    PooledEncoderForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    if meta.adapter:
        model.save_pretrained(out)  # adapter_config.json + adapter weights (+ the trained head)
        model.base_model.model.config.save_pretrained(out)  # the task config: labels, pooling
        if config.tuning.lora.merge:
            merged = model.merge_and_unload()
            merged.save_pretrained(out / "merged")
            tokenizer.save_pretrained(out / "merged")
    else:
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta.save(out)
    config.to_yaml(out / "config.yaml")
    labels = {"id2label": dict(enumerate(meta.label_names)), "label2id": {n: i for i, n in enumerate(meta.label_names)}}
    (out / "labels.json").write_text(json.dumps(labels, indent=2))
