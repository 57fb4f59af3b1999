"""LoRA through peft: low-rank updates on the chosen linear layers, the task head trained in full.

Everything LoRA-specific lives here: its config checks, wrapping the model, and the run directory it
writes. That directory holds the adapter (loadable with plain peft over the base model, see
`goldmine.training.artifacts`), the task config and, with `lora.merge`, a merged full model under
`merged/` that serves with no peft at all. `Model.load` merges the adapter into the base for speed.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from goldmine.errors import ConfigError
from goldmine.registry import STRATEGIES, TASKS
from goldmine.tuning.base import TuningMethod, head_parameter_names


@STRATEGIES.register("lora")
class LoRA(TuningMethod):
    name = "lora"
    adapter = True

    def check(self, config) -> None:
        if config.data.case_features:
            raise ConfigError("data.case_features needs tuning.strategy full or freeze: a LoRA adapter loads over "
                              "the unchanged base model, whose token-type table has no case rows")

    def apply(self, model: nn.Module, config) -> nn.Module:
        from peft import LoraConfig, TaskType, get_peft_model

        lora = config.tuning.lora
        task = TASKS.get(config.task)
        head_modules = sorted({name.rsplit(".", 1)[0] for name in head_parameter_names(model)}) \
            if task.lora_trains_head else None
        peft_config = LoraConfig(
            task_type=TaskType[task.peft_task_type],
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=target_modules(config),
            modules_to_save=head_modules,
        )
        return get_peft_model(model, peft_config)

    def save(self, model: nn.Module, tokenizer, out: Path, config) -> None:
        """The adapter (+ the trained head), the task config and the custom model code, so plain transformers
        + peft load it over the base model; with `lora.merge` also a merged full model in `out/merged`."""
        from transformers.dynamic_module_utils import custom_object_save

        model.save_pretrained(out)  # adapter_config.json + adapter weights (+ the trained head)
        task_model = model.base_model.model
        if type(task_model)._auto_class is not None:  # copy pooled_classifier.py and set config.auto_map
            custom_object_save(task_model, out, config=task_model.config)
        task_model.config.save_pretrained(out)  # the task config: labels, pooling
        if config.tuning.lora.merge:
            merged = model.merge_and_unload()
            merged.save_pretrained(out / "merged")
            tokenizer.save_pretrained(out / "merged")

    def load(self, directory: Path, base_model: str, model_class) -> nn.Module:
        """Base model + adapter, merged: inference then runs the plain network at full speed."""
        import json

        from peft import PeftModel
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(directory)
        task = TASKS.get(json.loads((directory / "goldmine.json").read_text())["task"])
        base = model_class.from_pretrained(task.resolve_base(base_model), config=config)
        return PeftModel.from_pretrained(base, directory).merge_and_unload()


def target_modules(config) -> list[str]:
    """`tuning.lora.target_modules`, or the task's own default when it is left at the encoders' default."""
    from goldmine.config import LoraConfig as LoraSettings

    chosen = config.tuning.lora.target_modules
    default = LoraSettings.model_fields["target_modules"].default
    task_default = TASKS.get(config.task).lora_target_modules
    return task_default if chosen == default and task_default else chosen
