"""LoRA through peft: low-rank updates on the chosen linear layers, the task head trained in full.

The run directory holds the adapter (loadable with plain peft) and, with `lora.merge`, a
merged full model that serves with no peft at all.
"""

from __future__ import annotations

from peft import LoraConfig, TaskType, get_peft_model
from torch import nn

from goldmine.tuning import STRATEGIES
from goldmine.tuning.freeze import head_parameter_names


@STRATEGIES.register("lora")
def apply_lora(model: nn.Module, config) -> nn.Module:
    lora = config.tuning.lora
    head_modules = sorted({name.rsplit(".", 1)[0] for name in head_parameter_names(model)})
    task_type = TaskType.TOKEN_CLS if config.task == "ner" else TaskType.SEQ_CLS
    peft_config = LoraConfig(
        task_type=task_type,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=head_modules,
    )
    return get_peft_model(model, peft_config)
