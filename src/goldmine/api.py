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
             options: ReadOptions | None = None, runtime: str = "auto", threads: int | None = None) -> dict:
    """Metrics of a trained model on any labeled file, as `goldmine eval` computes them.

    `runtime` (torch | onnx | onnx-int8 | auto) picks what runs the model, so what is measured is what is
    served; `metrics["runtime"]` says which ran, on which execution provider and threads.
    """
    from goldmine.evaluation.evaluate import evaluate as run
    from goldmine.evaluation.evaluate import write_evaluation
    from goldmine.inference.model import Model

    model = Model.load(model_dir, runtime=runtime, threads=threads)
    labeled = read_file(data, options or ReadOptions(multi_label=True if model.task.multi_label else None))
    metrics = run(model, labeled)
    metrics["runtime"] = model.describe_runtime()
    if out_dir:
        write_evaluation(metrics, Path(out_dir))
    return metrics


def predict(model_dir: str | Path, texts: list[str], runtime: str = "auto", threads: int | None = None,
            texts_b: list[str] | None = None, labels: list[str] | None = None) -> list[dict]:
    """Labels with scores, or entities with offsets, as `goldmine predict` prints them. A pair model (trained on
    text_a, text_b) takes the second text of each pair in `texts_b`; a zero-shot model takes a label list of the
    call's own in `labels`."""
    from goldmine.inference.model import Model

    return Model.load(model_dir, runtime=runtime, threads=threads).predict(texts, texts_b, labels)


def export(model_dir: str | Path, format: str = "onnx", quantize: str | None = None, *, force: bool = False,
           max_loss: float = 0.5, data: str | Path | None = None, sample_size: int | None = None,
           threads: int | None = None, int8_scheme: str = "auto"):
    """Export for fast serving behind a parity gate, as `goldmine export` does; returns an `ExportResult`.

    Writes `<run>/onnx/model.onnx` (+ `model.int8.onnx` with quantize="int8"), `manifest.json` and
    `parity.json`; raises `goldmine.export.ParityError` when an exported runtime loses more than `max_loss`
    points of the task metric on the run's dev data (unless `force`). int8 is quantised with the fastest scheme
    the gate accepts: `full`, else `mixed-1`, `mixed-2` ... `mixed` (`int8_scheme` picks one). See
    `goldmine.export.exporter` and `goldmine.export.quantize`.
    """
    from goldmine.export.exporter import export_model

    return export_model(model_dir, format, quantize, force=force, max_loss=max_loss, data=data,
                        sample_size=sample_size, threads=threads, int8_scheme=int8_scheme)


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
