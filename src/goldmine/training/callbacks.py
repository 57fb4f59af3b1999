"""Trainer callbacks goldmine adds: TensorBoard logs in the run directory."""

from __future__ import annotations

from pathlib import Path

from transformers.integrations import TensorBoardCallback


def tensorboard_callback(log_dir: Path) -> TensorBoardCallback:
    """TensorBoard events under `<output_dir>/logs`, beside the model rather than inside checkpoints.

    The writer is created by the callback when training begins, and only on the main process: a writer made
    here would leave one events file per process in a distributed run.
    """
    callback = TensorBoardCallback()
    callback.logging_dir = str(log_dir)
    return callback
