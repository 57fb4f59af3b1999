"""Trainer callbacks goldmine adds: TensorBoard logs in the run directory, and the recipe's phases.

A Trainer callback only hears the training loop. The recipe does more than that loop (it fits a probe before it and
evaluates on test after it), so a callback that wants those steps too, such as a progress display, subclasses
`PhaseCallback` and the recipe wraps each step in `phase(callbacks, name)`. Callbacks that do not care see nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback


def tensorboard_callback(log_dir: Path) -> TensorBoardCallback:
    """TensorBoard events under `<output_dir>/logs`, beside the model rather than inside checkpoints.

    The writer is created by the callback when training begins, and only on the main process: a writer made
    here would leave one events file per process in a distributed run.
    """
    callback = TensorBoardCallback()
    callback.logging_dir = str(log_dir)
    return callback


class PhaseCallback(TrainerCallback):
    """A Trainer callback that also hears the recipe's phases outside the Trainer (probe fit, test evaluation)."""

    @contextmanager
    def phase(self, name: str, total: int | None = None) -> Iterator[Callable[[], None]]:
        """Runs around one phase; yields `advance()`, called after each of `total` units of work (None: unknown)."""
        yield lambda: None


@contextmanager
def phase(callbacks: list | None, name: str, total: int | None = None) -> Iterator[Callable[[], None]]:
    """Tell every `PhaseCallback` in `callbacks` that phase `name` runs; yields one `advance()` for all of them."""
    with ExitStack() as stack:
        advances = [stack.enter_context(cb.phase(name, total)) for cb in callbacks or ()
                    if isinstance(cb, PhaseCallback)]

        def advance() -> None:
            for step in advances:
                step()

        yield advance
