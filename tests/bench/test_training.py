"""bench/training.py's rules: time to metric (the metric must hold to the end), the median speedup, and a clock that
leaves evaluation out. The benchmark itself trains for hours; these are the parts its figures hang on."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_training", ROOT / "bench" / "training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def curve(*metrics: float) -> list[dict]:
    return [{"step": 10 * (i + 1), "train_seconds": 100.0 * (i + 1), "dev_metric": m} for i, m in enumerate(metrics)]


def test_a_spike_that_falls_back_is_not_the_time_to_metric(bench):
    point = bench.time_to_metric(curve(0.80, 0.86, 0.83, 0.85, 0.87), target=0.84)
    assert point["step"] == 40  # not step 20, where the metric touched the target once


def test_the_target_counts_as_reached_when_equal(bench):
    assert bench.time_to_metric(curve(0.80, 0.84, 0.84), target=0.84)["step"] == 20


def test_a_final_evaluation_below_the_target_is_not_reached(bench):
    assert bench.time_to_metric(curve(0.85, 0.86, 0.83), target=0.84) is None
    assert bench.time_to_metric([], target=0.84) is None


def test_speedup_is_median_over_median(bench):
    assert bench.speedup([100.0, 120.0], [20.0, 30.0]) == 4.4  # 110 / 25
    assert bench.speedup([100.0, 120.0, 200.0], [20.0, None, 30.0]) == 4.0  # 120 / 30: the miss counts as slowest


def test_speedup_is_none_when_the_median_goldmine_run_missed(bench):
    assert bench.speedup([100.0, 120.0], [20.0, None]) is None
    assert bench.speedup([100.0], []) is None


def test_summarise_sets_each_goldmine_target_to_the_peer_median(bench):
    runs = {
        "trainer_guide": [{"dev_metric": 0.84, "train_seconds": 400.0}, {"dev_metric": 0.86, "train_seconds": 600.0}],
        "goldmine": [{"evaluations": curve(0.80, 0.86, 0.84, 0.85, 0.86)},  # holds >= 0.85 from step 40
                     {"evaluations": curve(0.85, 0.86, 0.87, 0.88, 0.88)}],  # from step 10
    }
    summary = bench.summarise(runs)
    assert summary["trainer_guide"]["target"] == pytest.approx(0.85)
    assert summary["trainer_guide"]["goldmine_seconds"] == [400.0, 100.0]
    assert summary["speedup_vs_trainer_guide"] == 2.0  # 500 / 250
    assert runs["goldmine"][0]["to_target"]["trainer_guide"]["reached"]["step"] == 40
    assert "speedup_to_same_metric" not in summary  # no textbook runs, no textbook ratio


def test_the_clock_takes_evaluation_out(bench, monkeypatch):
    now = iter([0.0, 10.0, 15.0, 20.0, 21.0])
    clock = bench.make_clock("accuracy")
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: next(now)))
    clock.start()  # 0
    state = SimpleNamespace(global_step=1, epoch=0.5)
    clock.on_step_end(None, state, None)  # 10 s of training
    clock.on_evaluate(None, state, None, metrics={"eval_accuracy": 0.7, "eval_loss": 0.6})  # 5 s evaluating
    state.global_step, state.epoch = 2, 1.0
    clock.on_step_end(None, state, None)  # 5 more s of training
    clock.on_evaluate(None, state, None, metrics={"eval_accuracy": 0.8, "eval_loss": 0.5})
    assert [e["train_seconds"] for e in clock.evaluations] == [10.0, 15.0]
    assert [e["eval_seconds"] for e in clock.evaluations] == [5.0, 1.0]
    assert clock.train_seconds == 15.0 and clock.final_step == 2
