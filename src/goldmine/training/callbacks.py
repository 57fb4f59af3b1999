"""Trainer callbacks goldmine adds: TensorBoard logs in the run directory."""

from __future__ import annotations

from pathlib import Path

from transformers.integrations import TensorBoardCallback


def tensorboard_callback(log_dir: Path) -> TensorBoardCallback:
    """TensorBoard events under `<output_dir>/logs`, beside the model rather than inside checkpoints."""
    from torch.utils.tensorboard import SummaryWriter

    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir)))
