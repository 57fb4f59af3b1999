"""The training display: what it shows for the recipe's phases and the Trainer's events, and when it stays quiet.

The events are replayed by hand (no model): the CLI tests show the same display on a real run.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from rich.console import Console

from goldmine.training.callbacks import PhaseCallback, phase
from goldmine.training.progress import TrainingDisplay


def _display() -> tuple[TrainingDisplay, io.StringIO]:
    out = io.StringIO()
    return TrainingDisplay(Console(file=out, width=100, color_system=None)), out


def _args(metric: str | None = "accuracy", greater: bool | None = True):
    return SimpleNamespace(metric_for_best_model=metric, greater_is_better=greater)


def _state(step: int, max_steps: int = 120):
    return SimpleNamespace(global_step=step, max_steps=max_steps)


def _lines(out: io.StringIO) -> list[str]:
    return [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]


def test_phases_around_a_training_run():
    display, out = _display()
    args = _args()
    with phase([display], "probe fit"):
        pass
    with phase([display], "training"):
        display.on_train_begin(args, _state(0), None)
        display.on_log(args, _state(20), None, logs={"loss": 0.44841, "learning_rate": 9.2e-05, "epoch": 0.5,
                                                     "grad_norm": 3.1})
        for _ in range(3):
            display.on_prediction_step(args, _state(40), None, eval_dataloader=[1, 2, 3])
        display.on_evaluate(args, _state(40), None, metrics={"eval_loss": 0.30123, "eval_accuracy": 0.9,
                                                             "eval_runtime": 1.5})
        display.on_log(args, _state(60), None, logs={"loss": 0.2, "learning_rate": 6.1e-05, "epoch": 1.5})
        display.on_evaluate(args, _state(120), None, metrics={"eval_loss": 0.4, "eval_accuracy": 0.85})
        for step in range(1, 121):
            display.on_step_end(args, _state(step), None)
        display.on_log(args, _state(120), None, logs={"train_runtime": 85.24, "train_loss": 0.312, "epoch": 3.0})
        display.on_train_end(args, _state(120), None)
    with phase([display], "test evaluation", total=3) as advance:
        for _ in range(3):
            advance()
    lines = _lines(out)
    assert lines[0].startswith("probe fit        ━━━━") and lines[0].endswith(" 0:00:00")  # no count: it has none
    assert lines[1:6] == [
        "step  20/120  epoch 0.50  loss 0.4484  lr 9.20e-05",
        "step  40/120  dev accuracy 0.9000 (best 0.9000)  dev loss 0.3012",
        "step  60/120  epoch 1.50  loss 0.2000  lr 6.10e-05  dev accuracy 0.9000",
        "step 120/120  dev accuracy 0.8500 (best 0.9000)  dev loss 0.4000",
        "done: 120 steps in 85.2s, mean loss 0.3120",
    ]
    assert lines[6].startswith("training         ━━━━") and lines[6].endswith(" 120/120 0:00:00")
    assert lines[7].startswith("test evaluation  ━━━━") and lines[7].endswith(" 3/3 0:00:00")
    assert len(lines) == 8  # the nested dev bar is removed when its evaluation ends
    assert not display.console._live_stack  # rich's live displays on this console: none left running


def test_a_lower_is_better_metric_keeps_the_lowest_as_best():
    display, out = _display()
    args = _args("loss", greater=False)
    for step, loss in ((1, 0.5), (2, 0.7)):
        display.on_evaluate(args, _state(step, 2), None, metrics={"eval_loss": loss})
    assert _lines(out) == ["step 1/2  dev loss 0.5000 (best 0.5000)", "step 2/2  dev loss 0.7000 (best 0.5000)"]


def test_without_a_best_metric_every_dev_figure_but_the_speeds_is_shown():
    display, out = _display()
    metrics = {"eval_loss": 1.25, "eval_entity_f1": 0.5, "eval_runtime": 2.0, "eval_samples_per_second": 10.0}
    display.on_evaluate(_args(None, None), _state(3, 9), None, metrics=metrics)
    assert _lines(out) == ["step 3/9  dev loss 1.2500  dev entity_f1 0.5000"]


def test_a_plain_trainer_gets_a_training_bar_of_its_own():
    display, out = _display()
    display.on_train_begin(_args(), _state(0, 4), None)
    for step in range(1, 5):
        display.on_step_end(_args(), _state(step, 4), None)
    display.on_train_end(_args(), _state(4, 4), None)
    [line] = _lines(out)
    assert line.startswith("training") and line.endswith(" 4/4 0:00:00")
    assert not display.console._live_stack  # rich's live displays on this console: none left running


def test_a_failing_phase_closes_its_bar():
    display, _ = _display()
    with pytest.raises(RuntimeError), phase([display], "training"):
        display.on_train_begin(_args(), _state(0, 4), None)
        raise RuntimeError("out of memory")
    assert not display.console._live_stack  # rich's live displays on this console: none left running
    with phase([display], "test evaluation", total=1) as advance:  # the console can show the next one
        advance()


def test_other_processes_of_a_distributed_run_show_nothing(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    display, out = _display()
    with phase([display], "training"):
        display.on_train_begin(_args(), _state(0, 4), None)
        display.on_log(_args(), _state(1, 4), None, logs={"loss": 1.0, "learning_rate": 1e-4, "epoch": 0.1})
        display.on_evaluate(_args(), _state(2, 4), None, metrics={"eval_accuracy": 0.5})
    assert out.getvalue() == ""


def test_phase_reaches_only_phase_callbacks():
    seen = []

    class Recorder(PhaseCallback):
        @contextmanager
        def phase(self, name, total=None):
            seen.append(("begin", name, total))
            yield lambda: seen.append(("advance", name, total))
            seen.append(("end", name, total))

    with phase([object(), Recorder()], "probe fit", total=2) as advance:
        advance()
    with phase(None, "training") as advance:
        advance()
    assert seen == [("begin", "probe fit", 2), ("advance", "probe fit", 2), ("end", "probe fit", 2)]
