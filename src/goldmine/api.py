"""The Python API, mirroring the CLI one function per command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goldmine.config import TrainConfig, load_config
from goldmine.data.readers import ReadOptions, read_file


def train(config: TrainConfig | str | Path | None = None, resume: bool = False, callbacks: list | None = None,
          **overrides: Any):
    """Fine-tune as `goldmine train` does. `overrides` are dotted keys: train(cfg, **{"training.epochs": 2})."""
    from goldmine.training.trainer import train as run

    if not isinstance(config, TrainConfig):
        config = load_config(config, overrides)
    elif overrides:
        config = load_config(None, {**_flatten(config.model_dump()), **overrides})
    return run(config, resume=resume, callbacks=callbacks)


def evaluate(model_dir: str | Path, data: str | Path, out_dir: str | Path | None = None,
             options: ReadOptions | None = None) -> dict:
    """Metrics of a trained model on any labeled file, as `goldmine eval` computes them."""
    from goldmine.evaluation.evaluate import evaluate as run
    from goldmine.inference.model import Model

    model = Model.load(model_dir)
    labeled = read_file(data, options or ReadOptions(multi_label=True if model.task.multi_label else None))
    return run(model, labeled, Path(out_dir) if out_dir else None)


def predict(model_dir: str | Path, texts: list[str]) -> list[dict]:
    """Labels with scores, or entities with offsets, as `goldmine predict` prints them."""
    from goldmine.inference.model import Model

    return Model.load(model_dir).predict(texts)


def ensemble(run_dirs: list[str | Path], output_dir: str | Path) -> Path:
    """An ensemble directory averaging the members' probabilities, as `goldmine ensemble` writes it."""
    from goldmine.inference.ensemble import build_ensemble

    return build_ensemble(run_dirs, output_dir)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
