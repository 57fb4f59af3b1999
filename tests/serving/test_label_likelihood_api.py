"""A label-likelihood run (a decoder classifying by each label's reply likelihood) is served like any classifier:
predict answers with its labels and scores, billed by the tokens of the texts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import goldmine
from goldmine.config import load_config
from goldmine.inference.model import Model
from goldmine.serving.app import create_app
from goldmine.serving.db import UsageRecord
from goldmine.serving.registry import register

TEXTS = ["great film", "awful film"]


@pytest.fixture
def run_dir(tmp_path, tiny_decoder_dir):
    labels = tmp_path / "labels.yaml"
    labels.write_text("labels: [positive, negative]\n")
    out = tmp_path / "ll"
    goldmine.train(load_config(None, {"task": "classification", "tuning.strategy": "label_likelihood",
                                      "tuning.label_likelihood.labels": str(labels), "model.name":
                                      str(tiny_decoder_dir), "output_dir": str(out),
                                      "training.linear_probe": False}))
    return out


def test_predict_serves_a_label_likelihood_run(settings, db, keys, run_dir):
    register(db, settings.registry_dir, "sentiment", run_dir, "acme")
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/models/sentiment/predict", json={"texts": TEXTS},
                        headers={"Authorization": f"Bearer {keys['acme']}"})
    assert r.status_code == 200, r.text
    served = r.json()["predictions"]
    local = Model.load(run_dir).predict(TEXTS)
    assert [p["label"] for p in served] == [p["label"] for p in local]
    assert all(abs(sum(p["scores"].values()) - 1) < 1e-5 for p in served)
    with db.session() as s:
        [record] = list(s.query(UsageRecord))
    assert record.items == 2 and record.input_tokens > 0
