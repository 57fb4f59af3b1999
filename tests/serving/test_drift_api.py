"""Monitoring through the server: answered calls fill a version's window, a full window is tested and stored
without its texts, its figures reach /metrics and /v1/models/{name}/drift (tenant-scoped), and the report
command draws them."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from goldmine import cli
from goldmine.serving.app import create_app
from goldmine.serving.db import DriftWindow
from goldmine.serving.settings import load_settings

MARKER = "zebracorn"


def _settings(settings):
    return load_settings(**{**settings.model_dump(), "drift": {"window_texts": 12, "sample_texts": 6,
                                                              "permutations": 30}})


def test_windows_are_tested_stored_without_texts_and_shown(settings, db, models, keys, tmp_path, monkeypatch):
    settings = _settings(settings)
    auth = {"Authorization": f"Bearer {keys['acme']}"}
    texts = [f"where is my order {i} {MARKER}" for i in range(4)]
    with TestClient(create_app(settings)) as client:
        for _ in range(4):  # 16 texts: a window closes after the call that reaches 12; 4 texts wait in the next
            assert client.post("/v1/models/intents/predict", json={"texts": texts}, headers=auth).status_code == 200
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = client.get("/v1/models/intents/drift", headers=auth).json()
            if body["windows"]:
                break
            time.sleep(0.2)
        [window] = body["windows"]
        metrics = client.get("/metrics").text
        foreign = client.get("/v1/models/intents/drift", headers={"Authorization": f"Bearer {keys['globex']}"})
        admin = client.get("/v1/models/intents/drift", headers={"Authorization": f"Bearer {keys['admin']}"})
    assert window["texts"] == 12 and window["version"] == models["intents"].version
    assert window["input_tests"] and 0 < window["mmd_p_value"] <= 1 and isinstance(window["alarm"], bool)
    assert sum(window["label_counts"].values()) == 12 and window["median_words"] == 6
    assert body["alarm_p_value"] == 0.01
    assert foreign.status_code == 404 and admin.status_code == 200
    version = models["intents"].version
    assert f'goldmine_drift_windows_total{{model="intents",version="{version}"}} 1.0' in metrics
    assert f'goldmine_drift_p_value{{model="intents",version="{version}"}}' in metrics
    assert 'goldmine_prediction_confidence_count{model="intents"} 16.0' in metrics
    with db.session() as session:  # the shutdown flush does not close a window of 4 (< 50 texts)
        rows = list(session.query(DriftWindow))
    assert len(rows) == 1 and MARKER not in rows[0].report_json
    database = settings.url.removeprefix("sqlite:///")
    for path in (Path(database), Path(database + "-wal")):
        assert not path.is_file() or MARKER.encode() not in path.read_bytes()

    monkeypatch.setenv("GOLDMINE_DATA_DIR", str(settings.data_dir))
    result = CliRunner().invoke(cli.app, ["drift", "report", "intents", "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "drift.png").stat().st_size > 1000
    assert "<table>" in (tmp_path / "report" / "drift.html").read_text()
    unknown = CliRunner().invoke(cli.app, ["drift", "report", "nope"])
    assert unknown.exit_code == 2 and "no model named 'nope'" in unknown.output


def test_monitoring_can_be_switched_off(settings, db, models, keys):
    settings = load_settings(**{**settings.model_dump(), "drift": {"enabled": False, "window_texts": 10}})
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/models/intents/predict", json={"texts": ["hello"] * 12},
                        headers={"Authorization": f"Bearer {keys['acme']}"})
        assert r.status_code == 200
        assert "goldmine_prediction_confidence_count" not in client.get("/metrics").text
    with db.session() as session:
        assert session.query(DriftWindow).count() == 0
