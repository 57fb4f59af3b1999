"""Exported copies of the tiny runs. Exports go into copies, so the session's shared `tiny_run` directories
(which other tests load with the default runtime="auto") never gain an ONNX export."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def copy_run(source: Path, target: Path, keep_exports: bool = False) -> Path:
    skip = ("checkpoints", "logs") if keep_exports else ("checkpoints", "logs", "onnx", "onnx.*")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*skip))
    return target


@pytest.fixture(scope="session")
def copy_of(tmp_path_factory):
    """`copy_of(run_dir, keep_exports=False)`: a copy of a run directory without checkpoints and logs."""

    def make(source: Path, keep_exports: bool = False) -> Path:
        return copy_run(source, tmp_path_factory.mktemp("copy") / "run", keep_exports)

    return make


@pytest.fixture(scope="session")
def fresh_copy(tmp_path_factory, tiny_run):
    """`fresh_copy(task)`: a new copy of `tiny_run(task)` without any export, for one test to change."""

    def make(task: str) -> Path:
        return copy_run(tiny_run(task), tmp_path_factory.mktemp(f"copy-{task}") / "run")

    return make


@pytest.fixture(scope="session")
def exported(fresh_copy):
    """`exported(task)`: a copy of the tiny run exported once per session to ONNX fp32 + int8.

    The tiny runs trained 2 steps: their logits are nearly flat, so int8 noise may flip a few argmaxes; the gate
    is tested on a trained run (`trained_run`), so these exports are forced through it.
    """
    from goldmine.export import export_model

    cache: dict[str, Path] = {}

    def get(task: str) -> Path:
        if task not in cache:
            run = fresh_copy(task)
            export_model(run, quantize="int8", force=True, threads=1)
            cache[task] = run
        return cache[task]

    return get


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, demo_files, tiny_model_dir) -> Path:
    """The tiny model trained 80 steps on the demo intents: well above chance (about 0.5 accuracy on the dev
    split against 0.13 for the majority class), so a degraded export visibly loses accuracy."""
    import goldmine

    out = tmp_path_factory.mktemp("trained") / "run"
    goldmine.train(None, **{
        "task": "classification", "data.train": demo_files.intents, "model.name": str(tiny_model_dir),
        "output_dir": out, "training.max_steps": 80, "training.batch_size": 16, "training.learning_rate": 3e-3,
        "training.eval_strategy": "none", "training.linear_probe": False, "training.head_init": "random",
    })
    return out
