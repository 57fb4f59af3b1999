"""Server-drawn SVG charts: labels escaped, one bar per column, a title that says what the chart shows."""

from __future__ import annotations

from goldmine.console.charts import lines, stacked_bars
from goldmine.console.figures import job_curves


def test_labels_are_escaped_and_bars_stack():
    svg = stacked_bars("calls <by> day", ["2026-12-01", "2026-12-02"], {"<m>": [1, 0], "b": [2, 3]})
    assert svg.startswith("<svg") and "<m>" not in svg and "&lt;m&gt;" in svg
    assert "<title>calls &lt;by&gt; day</title>" in svg
    assert svg.count("<rect x=") == 3  # zero-height parts are not drawn


def test_lines_skip_missing_points():
    svg = lines("p", {"a": [0.1, None, 0.3], "b": [None, None, None]}, top=1.0)
    assert svg.count("<circle") == 2 and svg.count("<polyline") == 1


def test_job_curves_come_from_the_log_lines():
    log = ["10:00:00 phase: train", "10:00:01 step 1/4  loss 2.3000", "10:00:02 step 2/4  loss 2.1000",
           "10:00:02 step 2/4  dev loss 2.0500  dev accuracy 0.2500  dev epoch 0.5000",
           "10:00:03 done: 4 steps in 1.0s"]
    assert job_curves(log) == {"loss": [(1, 2.3), (2, 2.1)], "dev loss": [(2, 2.05)], "dev accuracy": [(2, 0.25)]}
