"""Ensembles average member probabilities and refuse members that encode inputs differently."""

from __future__ import annotations

import json

import numpy as np
import pytest

import goldmine
from goldmine.errors import ModelError
from goldmine.inference.ensemble import EnsembleModel
from goldmine.inference.model import Model

TEXTS = ["where is my order?", "I lost my card", "please cancel order 123 right now, it is wrong"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_run, tiny_model_dir, demo_files):
    second = tmp_path_factory.mktemp("seed7")
    goldmine.train(None, **{
        "task": "classification", "data.train": demo_files.intents, "model.name": str(tiny_model_dir),
        "output_dir": second, "training.max_steps": 2, "training.batch_size": 8, "training.seed": 7,
        "training.eval_strategy": "none", "training.linear_probe": False,
    })
    return tiny_run("classification"), second


def test_ensemble_averages_member_probabilities(two_runs, tmp_path):
    path = goldmine.ensemble(list(two_runs), tmp_path / "ens")
    model = Model.load(path)
    assert isinstance(model, EnsembleModel)
    members = [Model.load(run).predict(TEXTS) for run in two_runs]
    for i, out in enumerate(model.predict(TEXTS)):
        expected = {k: (members[0][i]["scores"][k] + members[1][i]["scores"][k]) / 2 for k in out["scores"]}
        assert out["scores"] == pytest.approx(expected, abs=1e-5)
        assert out["label"] == max(expected, key=expected.get)
    # The members stay where they are, referenced relative to the ensemble directory.
    meta = json.loads((path / "goldmine.json").read_text())
    assert meta["strategy"] == "ensemble" and len(meta["members"]) == 2
    assert not any(m.startswith("/") for m in meta["members"])


def test_ensemble_evaluates_like_a_run(two_runs, tmp_path, demo_files):
    metrics = goldmine.evaluate(goldmine.ensemble(list(two_runs), tmp_path / "ens"), demo_files.intents)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["n_examples"] == len(demo_files.intents.read_text().splitlines()) - 1
    assert np.isfinite(metrics["calibration"]["ece"])


def test_members_of_different_tasks_are_refused(two_runs, tiny_run, tmp_path):
    with pytest.raises(ModelError, match="ensemble members differ in task"):
        goldmine.ensemble([two_runs[0], tiny_run("ner")], tmp_path / "bad")
