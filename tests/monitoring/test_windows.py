"""A trained classifier carries its drift reference; a window counts what it saw, tests it against the
reference, and drops its texts."""

from __future__ import annotations

import csv

import numpy as np
from typer.testing import CliRunner

from goldmine import cli
from goldmine.inference.model import Model
from goldmine.monitoring.reference import REFERENCE_FILE, DriftReference
from goldmine.monitoring.windows import Window

runner = CliRunner()


def test_training_writes_the_reference(tiny_run, demo_files):
    run = tiny_run("classification")
    reference = DriftReference.load(run)
    model = Model.load(run)
    rows = list(csv.DictReader(demo_files.intents.open(encoding="utf-8")))
    assert reference.labels == model.labels
    assert reference.embeddings.shape == (min(256, len(rows)), model.embed(["x"]).shape[1])
    assert abs(reference.label_shares.sum() - 1) < 1e-6 and 0 <= reference.oov_rate < 1
    assert {"refund", "order"} & reference.vocabulary
    assert DriftReference.load(tiny_run("ner")) is None  # token classifiers pool no sentence embedding


def test_a_window_counts_tests_and_forgets(tiny_run):
    run = tiny_run("classification")
    model = Model.load(run)
    window = Window("acme", "intents", "v1", sample_size=8, started_at=None)
    texts = [f"my order number {i} never arrived, zebracorn" for i in range(30)]
    for text, prediction in zip(texts, model.predict(texts), strict=True):
        window.observe(text, prediction)
    assert window.texts == 30 and len(window.sample) == 8 and sum(window.label_counts.values()) == 30
    report = window.close(model, DriftReference.load(run), permutations=50, alarm_p_value=0.01)
    assert window.sample == [] and window.words == []
    assert report.texts == 30 and report.input_tests and 0 < report.mmd_p_value <= 1
    assert report.alarm == (report.mmd_p_value < 0.01)
    assert sum(report.confidence_histogram) == 30 and report.median_words == 7
    assert report.oov_rate >= 1 / 7  # "zebracorn", one word in 7, is no training word
    assert "zebracorn" not in report.to_json()
    counted_only = Window("acme", "intents", "v1", 8, None)
    counted_only.observe("hello", {"label": "a", "score": 0.9, "out_of_scope": True})
    plain = counted_only.close(model, None, 50, 0.01)
    assert not plain.input_tests and plain.mmd_p_value is None and plain.out_of_scope_rate == 1.0


def test_reference_command(tmp_path, tiny_run, demo_files):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run("classification"), run)
    (run / REFERENCE_FILE).unlink()
    result = runner.invoke(cli.app, ["drift", "reference", str(run), str(demo_files.intents)])
    assert result.exit_code == 0, result.output
    assert DriftReference.load(run) is not None
    ner = runner.invoke(cli.app, ["drift", "reference", str(tiny_run("ner")), str(demo_files.intents)])
    assert ner.exit_code == 2 and "classifiers of single texts" in ner.output
    assert np.isfinite(DriftReference.load(run).embeddings).all()
