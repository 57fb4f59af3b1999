"""training.ema_decay: the weights' exponential moving average is what is evaluated, checkpointed and saved,
while the raw weights train exactly as without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import goldmine
from goldmine.config import load_config
from goldmine.errors import ConfigError
from goldmine.inference.model import Model
from goldmine.training.weight_averaging import AVERAGE_FILE, WeightAveraging

DECAY = 0.8


def _config(tiny: Path, train: Path, out: Path, **overrides):
    return load_config(None, {
        "task": "classification", "data.train": str(train), "model.name": str(tiny), "output_dir": str(out),
        "training.max_steps": 6, "training.eval_strategy": "none", "training.linear_probe": False,
        "training.batch_size": 16, "training.learning_rate": 0.005, "training.seed": 7, "training.logging_steps": 1,
        **overrides,
    })


class Recorder(TrainerCallback):
    """The raw trainable weights at the start and after each step, and the weights each evaluation saw."""

    def __init__(self):
        self.steps: list[dict[str, torch.Tensor]] = []
        self.evaluated: dict[int, dict[str, torch.Tensor]] = {}

    @staticmethod
    def _weights(model) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.steps.append(self._weights(model))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps.append(self._weights(model))  # runs before the averaging callback: the raw weights

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self.evaluated[state.global_step] = self._weights(model)  # before the average is swapped back out


def _average(steps: list[dict[str, torch.Tensor]], upto: int) -> dict[str, torch.Tensor]:
    """The EMA by its definition: decay min(DECAY, (1 + k) / (10 + k)) after step k."""
    average = {n: t.clone() for n, t in steps[0].items()}
    for k in range(1, upto + 1):
        decay = min(DECAY, (1 + k) / (10 + k))
        average = {n: decay * average[n] + (1 - decay) * steps[k][n] for n in average}
    return average


@pytest.mark.parametrize(("task", "setting", "expected"), [
    ("classification", "auto", 0.99), ("ner", "auto", None), ("multilabel", "auto", None),
    ("classification", False, None), ("classification", "off", None), ("classification", "null", None),
    ("ner", 0.9, 0.9), ("classification", "0.95", 0.95),
])
def test_auto_is_the_tasks_measured_default(task, setting, expected):
    from goldmine.registry import TASKS
    from goldmine.training.trainer import _ema_decay

    training = load_config(None, {"task": task, "training.ema_decay": setting}).training
    assert _ema_decay(training, TASKS.get(task)) == expected


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5, -0.1])
def test_a_decay_outside_0_1_is_refused(decay):
    with pytest.raises(ConfigError, match="ema_decay must be in"):
        load_config(None, {"training.ema_decay": decay})


def _logged_losses(run_dir: Path) -> list[float]:
    return [e["loss"] for e in json.loads((run_dir / "log_history.json").read_text()) if "loss" in e]


def test_the_saved_model_is_the_average_and_the_raw_weights_train_as_without_it(tiny_model_dir, demo_files, tmp_path):
    recorder = Recorder()
    averaged = goldmine.train(_config(tiny_model_dir, demo_files.intents, tmp_path / "ema",
                                      **{"training.ema_decay": DECAY}), callbacks=[recorder])
    expected = _average(recorder.steps, 6)
    saved = dict(Model.load(averaged.output_dir, runtime="torch").network.named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(saved[name].detach(), value, rtol=0, atol=1e-6, msg=name)
    assert any(not torch.equal(expected[n], recorder.steps[-1][n]) for n in expected)  # it is not the raw model

    plain = goldmine.train(_config(tiny_model_dir, demo_files.intents, tmp_path / "plain",
                                   **{"training.ema_decay": False}))
    assert _logged_losses(averaged.output_dir) == pytest.approx(_logged_losses(plain.output_dir), abs=1e-6)


def test_evaluation_sees_the_average_and_training_goes_on_from_the_raw_weights(tiny_model_dir, demo_files,
                                                                             tmp_path):
    recorder = Recorder()
    overrides = {"training.eval_strategy": "steps", "training.eval_steps": 3, "training.early_stopping_patience": None}
    goldmine.train(_config(tiny_model_dir, demo_files.intents, tmp_path / "ema",
                           **{**overrides, "training.ema_decay": DECAY}), callbacks=[recorder])
    assert sorted(recorder.evaluated) == [3, 6]
    for step in (3, 6):
        for name, value in _average(recorder.steps, step).items():
            torch.testing.assert_close(recorder.evaluated[step][name], value, rtol=0, atol=1e-6, msg=name)
    plain = Recorder()
    goldmine.train(_config(tiny_model_dir, demo_files.intents, tmp_path / "plain",
                           **{**overrides, "training.ema_decay": False}), callbacks=[plain])
    for mine, theirs in zip(recorder.steps, plain.steps, strict=True):  # evaluating the average changed no step
        for name in mine:
            torch.testing.assert_close(mine[name], theirs[name], rtol=0, atol=1e-6, msg=name)


def test_an_end_of_epoch_evaluation_sees_the_average_too(tiny_model_dir, demo_files, tmp_path):
    recorder = Recorder()
    overrides = {"training.eval_strategy": "epoch", "training.max_steps": -1, "training.epochs": 1,
                 "training.early_stopping_patience": None, "training.ema_decay": DECAY}
    goldmine.train(_config(tiny_model_dir, demo_files.intents, tmp_path / "ema", **overrides), callbacks=[recorder])
    [(step, seen)] = recorder.evaluated.items()
    assert step == len(recorder.steps) - 1  # once, at the end of the only epoch
    for name, value in _average(recorder.steps, step).items():
        torch.testing.assert_close(seen[name], value, rtol=0, atol=1e-6, msg=name)


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys

    from transformers import TrainerCallback

    import goldmine
    from goldmine.config import TrainConfig


    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                os.kill(os.getpid(), signal.SIGKILL)


    goldmine.train(TrainConfig.model_validate_json(sys.argv[1]), callbacks=[Kill()])
    """
)


def test_a_killed_run_resumes_to_the_same_average(tiny_model_dir, demo_files, tmp_path):
    overrides = {"training.ema_decay": DECAY, "training.save_steps": 2}
    killed = _config(tiny_model_dir, demo_files.intents, tmp_path / "killed", **overrides)
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, killed.model_dump_json()], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert (killed.output_dir / "checkpoints" / "checkpoint-4" / AVERAGE_FILE).is_file()
    resumed = goldmine.train(killed, resume=True)
    straight = goldmine.train(_config(tiny_model_dir, demo_files.intents, tmp_path / "straight", **overrides))
    a = load_file(str(resumed.output_dir / "model.safetensors"))
    b = load_file(str(straight.output_dir / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_decay_must_lie_strictly_between_0_and_1(decay):
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAveraging(decay)
