"""Resume: a run killed mid-training (SIGKILL, no cleanup) continues from its last checkpoint to the same model."""

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

import goldmine
from goldmine.config import load_config
from goldmine.errors import ConfigError

MAX_STEPS, SAVE_STEPS, KILL_AT = 8, 2, 5

KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys

    from transformers import TrainerCallback

    import goldmine
    from goldmine.config import TrainConfig


    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)


    config = TrainConfig.model_validate_json(sys.argv[1])
    goldmine.train(config, callbacks=[Kill()])
    """
)


def _config(tiny: Path, train: Path, out: Path):
    return load_config(None, {
        "task": "classification", "data.train": str(train), "model.name": str(tiny), "output_dir": str(out),
        "training.max_steps": MAX_STEPS, "training.save_steps": SAVE_STEPS, "training.eval_strategy": "none",
        "training.linear_probe": False, "training.batch_size": 16, "training.learning_rate": 0.005,
        "training.seed": 7, "training.logging_steps": 1,
    })


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in json.loads((run_dir / "log_history.json").read_text()) if "loss" in e]


def test_killed_run_resumes_to_the_same_model(tiny_model_dir, demo_files, tmp_path):
    killed = _config(tiny_model_dir, demo_files.intents, tmp_path / "killed")
    script = KILLED_RUN.format(kill_at=KILL_AT)
    proc = subprocess.run([sys.executable, "-c", script, killed.model_dump_json()], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == -9, proc.stderr[-3000:]
    checkpoints = sorted(p.name for p in (killed.output_dir / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    assert not (killed.output_dir / "goldmine.json").exists()  # it died before saving the model

    resumed = goldmine.train(killed, resume=True)
    straight = goldmine.train(_config(tiny_model_dir, demo_files.intents, tmp_path / "straight"))

    assert resumed.global_step == straight.global_step == MAX_STEPS
    assert resumed.test_metrics["accuracy"] == straight.test_metrics["accuracy"]
    assert resumed.test_metrics["confusion_matrix"] == straight.test_metrics["confusion_matrix"]
    a = load_file(str(resumed.output_dir / "model.safetensors"))
    b = load_file(str(straight.output_dir / "model.safetensors"))
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)
    # the resumed history holds the steps before the kill (from the checkpoint) and after it, with the losses
    # of the uninterrupted run: same batches, same dropout masks, same learning rates
    losses = _losses(resumed.output_dir)
    assert [step for step, _ in losses] == list(range(1, MAX_STEPS + 1))
    straight_losses = _losses(straight.output_dir)
    assert [step for step, _ in straight_losses] == list(range(1, MAX_STEPS + 1))
    assert [v for _, v in losses] == pytest.approx([v for _, v in straight_losses], abs=1e-5)
    assert len({round(v, 4) for _, v in losses}) > 1  # the loss moved: the run trained

def test_resume_without_checkpoint_is_a_config_error(tiny_model_dir, demo_files, tmp_path):
    config = _config(tiny_model_dir, demo_files.intents, tmp_path / "fresh")
    with pytest.raises(ConfigError, match=r"--resume: no complete checkpoint found under .*fresh/checkpoints"):
        goldmine.train(config, resume=True)
    assert not config.output_dir.exists()  # checked first: nothing loaded, nothing written
