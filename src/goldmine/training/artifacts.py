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

from transformers.dynamic_module_utils import custom_object_save

from goldmine.config import TrainConfig
from goldmine.inference.model import RunMeta
from goldmine.modeling.pooled_classifier import PooledEncoderForSequenceClassification


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("goldmine", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


def save_model(model, tokenizer, meta: RunMeta, config: TrainConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    PooledEncoderForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    if meta.adapter:
        model.save_pretrained(out)  # adapter_config.json + adapter weights (+ the trained head)
        task_model = model.base_model.model
        if type(task_model)._auto_class is not None:  # copy pooled_classifier.py and set config.auto_map
            custom_object_save(task_model, out, config=task_model.config)
        task_model.config.save_pretrained(out)  # the task config: labels, pooling
        if config.tuning.lora.merge:
            merged = model.merge_and_unload()
            merged.save_pretrained(out / "merged")
            tokenizer.save_pretrained(out / "merged")
    else:
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta.save(out)
    config.to_yaml(out / "config.yaml")
    names = meta.label_names
    labels = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    (out / "labels.json").write_text(json.dumps(labels, indent=2))
