"""A training run on a rich console: one progress bar per phase and one compact line per logged step.

The library never prints: a run is silent unless a display is attached, as `goldmine train` and `goldmine demo`
do (from Python: `goldmine.train(cfg, callbacks=[TrainingDisplay(Console())])`). transformers' own output is
switched off where it starts rather than by capturing stdout: the recipe gives the Trainer `disable_tqdm=True` and
drops the `PrinterCallback` that flag installs (its raw `{'loss': ...}` dicts), and the CLI sets transformers'
logging verbosity and progress bars (the "Loading weights" bars). `--verbose` brings those back, with the raw dicts
printed by transformers' own `PrinterCallback`. TensorBoard (`<run>/logs`) keeps every logged value either way.

What is shown, for a run with dev evaluation:

    probe fit        ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━         0:00:03
    step  20/120  epoch 0.50  loss 0.4484  lr 9.20e-05
    step  40/120  dev accuracy 0.9123 (best 0.9123)  dev loss 0.3012
    step  40/120  epoch 1.00  loss 0.2210  lr 6.10e-05  dev accuracy 0.9123
    done: 120 steps in 85.2s, mean loss 0.3120
    training         ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 120/120 0:01:25
    test evaluation  ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━     3/3 0:00:04
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text
from transformers import PrinterCallback, TrainerCallback
from transformers.trainer_utils import has_length

from goldmine.training.callbacks import PhaseCallback

# Evaluation figures that describe speed, not the model: left out of the dev line (TensorBoard has them).
_SPEED = ("runtime", "samples_per_second", "steps_per_second")


def display_callbacks(console: Console, raw_logs: bool = False) -> list[TrainerCallback]:
    """The callbacks the CLI attaches: the display, and with `raw_logs` (--verbose) transformers' raw log printer."""
    return [TrainingDisplay(console), *([RawLogs()] if raw_logs else [])]


class RawLogs(PrinterCallback):
    """transformers' own printer of the raw log dicts, for --verbose.

    A subclass only so that the Trainer, which installs a `PrinterCallback` of its own (dropped by the recipe),
    does not warn that it already has one.
    """


class _Count(ProgressColumn):
    """`done/total` for phases that count their work; nothing for those that cannot (a probe fit)."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("counted", True) or task.total is None:
            return Text("")
        width = len(str(int(task.total)))
        return Text(f"{int(task.completed):>{width}}/{int(task.total)}", style="progress.download")


class TrainingDisplay(PhaseCallback):
    """Shows a run on `console`: a bar per phase (a nested one while dev is evaluated), a line per log.

    Only the main process of a distributed run shows anything. Without the recipe's phases (attached to a plain
    `transformers.Trainer`) it still shows the training bar, started and stopped by the Trainer's own events.
    """

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.main = int(os.environ.get("RANK", "0")) == 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._owned = False  # the training bar was started by on_train_begin, not by the recipe's phase
        self._dev_task: TaskID | None = None
        self._dev: tuple[str, float] | None = None  # latest dev metric, repeated on the training lines
        self._best: float | None = None

    # ---- phases: one bar each ----

    @contextmanager
    def phase(self, name: str, total: int | None = None) -> Iterator[Callable[[], None]]:
        if not self.main:
            yield lambda: None
            return
        self._start(name, total)
        try:
            yield self._advance
        finally:
            self._stop()

    def _start(self, name: str, total: int | None) -> None:
        self._stop()  # one live display per console: a phase left open (an exception) is closed first
        self._progress = Progress(TextColumn("{task.description:<16}"), BarColumn(), _Count(), TimeElapsedColumn(),
                                  console=self.console)
        self._task = self._progress.add_task(name, total=total, counted=total is not None)
        self._progress.start()

    def _advance(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)

    def _stop(self) -> None:
        if self._progress is None:
            return
        task = next((t for t in self._progress.tasks if t.id == self._task), None)
        if task is not None and task.total is None:  # a phase that could not count its work ends as a full bar
            self._progress.update(self._task, total=1, completed=1)
        if self._dev_task is not None:
            self._progress.remove_task(self._dev_task)
            self._dev_task = None
        self._progress.stop()
        self._progress, self._task, self._owned = None, None, False

    def _line(self, text: str) -> None:
        (self._progress.console if self._progress else self.console).print(text, highlight=False)

    # ---- the Trainer's events: the training bar, the dev bar and the metric lines ----

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.main:
            return
        if self._progress is None:
            self._start("training", None)
            self._owned = True
        self._progress.update(self._task, total=state.max_steps, completed=state.global_step, counted=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.main and self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not self.main or self._progress is None:
            return
        if self._dev_task is None:
            total = len(eval_dataloader) if has_length(eval_dataloader) else None
            self._dev_task = self._progress.add_task("  dev evaluation", total=total, counted=total is not None)
        self._progress.advance(self._dev_task)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self.main:
            return
        if self._progress is not None and self._dev_task is not None:
            self._progress.remove_task(self._dev_task)
            self._dev_task = None
        self._line(f"{self._step(state)}  {self._dev_line(args, metrics or {})}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.main or not logs:
            return
        if "loss" in logs:
            parts = [self._step(state)]
            if logs.get("epoch") is not None:
                parts.append(f"epoch {logs['epoch']:.2f}")
            parts.append(f"loss {logs['loss']:.4f}")
            if logs.get("learning_rate") is not None:
                parts.append(f"lr {logs['learning_rate']:.2e}")
            if self._dev:
                parts.append(f"dev {self._dev[0]} {self._dev[1]:.4f}")
            self._line("  ".join(parts))
        elif "train_runtime" in logs:
            mean = f", mean loss {logs['train_loss']:.4f}" if "train_loss" in logs else ""
            self._line(f"done: {state.global_step} steps in {logs['train_runtime']:.1f}s{mean}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.main and self._owned:
            self._stop()

    def _step(self, state) -> str:
        total = str(state.max_steps or "?")
        return f"step {state.global_step:>{len(total)}}/{total}"

    def _dev_line(self, args, metrics: dict) -> str:
        """The metric that picks the best model first (with the best so far), then the dev loss; without such a
        metric, every dev figure but the speeds."""
        name = args.metric_for_best_model
        key = name if name is None or name.startswith("eval_") else f"eval_{name}"
        if key in metrics and isinstance(metrics[key], int | float) and math.isfinite(metrics[key]):
            value = float(metrics[key])
            better = max if args.greater_is_better is not False else min
            self._best = value if self._best is None else better(self._best, value)
            self._dev = (key.removeprefix("eval_"), value)
            shown = [f"dev {self._dev[0]} {value:.4f} (best {self._best:.4f})"]
            if "eval_loss" in metrics and key != "eval_loss":
                shown.append(f"dev loss {metrics['eval_loss']:.4f}")
            return "  ".join(shown)
        shown = [f"dev {k.removeprefix('eval_')} {v:.4f}" for k, v in metrics.items()
                 if k.startswith("eval_") and isinstance(v, int | float) and not k.endswith(_SPEED)]
        return "  ".join(shown) or "dev evaluated"
