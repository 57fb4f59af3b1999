"""Exponential moving average (EMA) of the weights: the model that is evaluated, kept and served is the average.

Polyak averaging (Polyak & Juditsky, 1992), in the exponential form that image and speech recipes keep beside the
trained weights: after each optimizer step, `average <- average + (1 - decay) * (weights - average)`. The last
~1/(1 - decay) steps are averaged, so the step-to-step swings of fine-tuning (on sst2 the dev accuracy of the raw
weights moved by up to 4 points between evaluations 20 steps apart) are smoothed out of the model that is
measured. The raw weights keep training unchanged: the average never feeds back into the optimizer.

What the Trainer sees:
- evaluation runs on the average (swapped in just before, swapped out just after), so early stopping and the
  choice of the best checkpoint judge the model that will be kept;
- each checkpoint holds the raw weights and optimizer (an exact resume) plus the average in `ema.safetensors`;
- at the end the model holds the average of the best checkpoint (or the last one), which is what is saved.

In the first steps the decay is lowered to (1 + step) / (10 + step), as TensorFlow's ExponentialMovingAverage
does with `num_updates`, so the average is not dominated by the pretrained start.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

log = logging.getLogger(__name__)
AVERAGE_FILE = "ema.safetensors"


class WeightAveraging(TrainerCallback):
    """Keeps the EMA of the trainable weights. `resume_from`: the checkpoint training resumes from, if any."""

    def __init__(self, decay: float, resume_from: str | None = None):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.resume_from = resume_from
        self.names: list[str] = []
        self.weights: list[torch.Tensor] = []
        self.average: list[torch.Tensor] = []
        self.swapped = False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.names = [name for name, _ in named]
        self.weights = [p for _, p in named]
        self.average = [p.detach().clone() for p in self.weights]
        if self.resume_from:
            path = Path(self.resume_from) / AVERAGE_FILE
            if path.is_file():
                self._load(path)
            else:  # a checkpoint written without averaging: the average starts from its weights
                log.warning("%s has no %s: the weight average starts from the checkpoint's weights",
                            self.resume_from, AVERAGE_FILE)

    @torch.no_grad()
    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.weights], 1 - decay)
        if control.should_evaluate and not self.swapped:  # the Trainer evaluates right after this hook
            self._swap()

    def on_epoch_end(self, args, state, control, **kwargs):
        if control.should_evaluate and not self.swapped:  # eval_strategy epoch: the Trainer evaluates after this hook
            self._swap()

    def on_evaluate(self, args, state, control, **kwargs):
        if self.swapped:
            self._swap()

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:  # the main process, which writes the checkpoint
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            save_file({name: t.contiguous() for name, t in zip(self.names, self.average, strict=True)},
                      folder / AVERAGE_FILE)

    @torch.no_grad()
    def on_train_end(self, args, state, control, **kwargs):
        if self.swapped:
            self._swap()
        best = state.best_model_checkpoint if args.load_best_model_at_end else None
        if best and (Path(best) / AVERAGE_FILE).is_file():  # the Trainer has just loaded that checkpoint's weights
            self._load(Path(best) / AVERAGE_FILE)
        torch._foreach_copy_(self.weights, self.average)

    @torch.no_grad()
    def _swap(self) -> None:
        raw = [p.detach().clone() for p in self.weights]
        torch._foreach_copy_(self.weights, self.average)
        self.average = raw
        self.swapped = not self.swapped

    def _load(self, path: Path) -> None:
        saved = load_file(path)
        missing = [name for name in self.names if name not in saved]
        if missing:
            raise ValueError(f"{path} lacks the averages of {len(missing)} weights (e.g. {missing[0]})")
        self.average = [saved[name].to(p.dtype) for name, p in zip(self.names, self.weights, strict=True)]
