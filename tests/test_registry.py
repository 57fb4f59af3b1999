"""Registries declare their names up front and import an implementation only when it is first used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from goldmine.errors import ConfigError
from goldmine.registry import STRATEGIES, TASKS, Registry
from goldmine.tasks.base import Task
from goldmine.tuning.base import TuningMethod


@pytest.mark.parametrize("name", TASKS.names())
def test_every_declared_task_resolves_to_a_task_of_that_name(name):
    task = TASKS.get(name)
    assert issubclass(task, Task) and task.name == name


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_declared_strategy_resolves_to_a_tuning_method_of_that_name(name):
    method = STRATEGIES.get(name)
    assert issubclass(method, TuningMethod) and method.name == name


def test_unknown_names_list_the_choices_and_suggest_the_closest():
    with pytest.raises(ConfigError, match=r"unknown task 'nerr'; choose one of \['causal_lm', 'classification', "
                                          r"'multilabel', "
                                          r"'ner', 'retrieval'\] \(did you mean 'ner'\?\)"):
        TASKS.check("nerr")


def test_a_declared_module_that_registers_nothing_is_a_clear_error():
    registry = Registry("widget", {"w": "goldmine.errors"})
    assert "w" in registry  # declared: a config naming it is valid
    with pytest.raises(RuntimeError, match="goldmine.errors does not register the widget 'w'"):
        registry.get("w")


def test_loading_a_config_imports_no_model_code():
    """A YAML file is checked against every task and strategy name without importing torch, peft or a task."""
    code = ("import sys\n"
            "from goldmine.config import load_config\n"
            "load_config(None, {'task': 'ner', 'tuning.strategy': 'lora'})\n"
            "heavy = [m for m in ('torch', 'peft', 'transformers', 'goldmine.tasks.token_classification',\n"
            "         'goldmine.tuning.lora') if m in sys.modules]\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
