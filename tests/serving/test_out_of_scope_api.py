"""A model with an out-of-scope rule answers over HTTP with `out_of_scope` and its fallback label, billed as any
call."""

from __future__ import annotations

import csv

from fastapi.testclient import TestClient

import goldmine
from goldmine.config import load_config
from goldmine.serving.app import create_app
from goldmine.serving.db import UsageRecord
from goldmine.serving.registry import register

OUTSIDE = ["what is the weather tomorrow", "tell me a joke", "who won the game", "play some music"]


def test_predictions_carry_out_of_scope(tmp_path, tiny_model_dir, demo_files, settings, db, keys):
    rows = list(csv.DictReader(demo_files.intents.open(encoding="utf-8")))
    train = tmp_path / "train.csv"
    with train.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, ["text", "label"])
        writer.writeheader()
        writer.writerows([{"text": r["text"], "label": r["label"]} for r in rows]
                         + [{"text": t, "label": "oos"} for t in OUTSIDE * 8])
    config = load_config(None, {"task": "classification", "model.name": str(tiny_model_dir), "data.train": str(train),
                                "output_dir": str(tmp_path / "run"), "training.max_steps": 40,
                                "training.learning_rate": 0.003, "training.eval_strategy": "none",
                                "training.linear_probe": False, "out_of_scope.label": "oos",
                                "out_of_scope.fallback_label": "human"})
    goldmine.train(config)
    register(db, settings.registry_dir, "assistant", config.output_dir, "acme")
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/models/assistant/predict", json={"texts": OUTSIDE},
                        headers={"Authorization": f"Bearer {keys['acme']}"})
    assert r.status_code == 200, r.text
    answers = r.json()["predictions"]
    assert all(isinstance(a["out_of_scope"], bool) for a in answers)
    assert any(a["out_of_scope"] for a in answers)  # 40 steps on these very texts
    assert all(a["label"] == "human" and a["closest_label"] == "oos" for a in answers if a["out_of_scope"])
    with db.session() as s:
        [record] = list(s.query(UsageRecord))
    assert record.items == len(OUTSIDE)
