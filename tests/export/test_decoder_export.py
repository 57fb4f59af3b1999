"""`goldmine export` of a causal LM run: ONNX graphs with the cache as inputs and outputs, a parity gate on the
replies' metrics, and a server that then decodes on the export."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from fastapi.testclient import TestClient

from goldmine.export.decoder import RUN_EXPORT_DIR, RUN_FILES, served_graph
from goldmine.export.exporter import export_model


@pytest.fixture
def run_dir(tmp_path, tiny_chat_run):
    target = tmp_path / "run"
    shutil.copytree(tiny_chat_run(True), target)
    return target


def test_export_gates_the_replies_and_installs_the_graphs(run_dir):
    result = export_model(run_dir, quantize="int4", force=True)
    report = json.loads((run_dir / RUN_EXPORT_DIR / "parity.json").read_text())
    assert set(report["runtimes"]) == {"torch", "onnx", "onnx-int4"}
    fp32 = report["runtimes"]["onnx"]
    assert fp32["token_agreement"] == 1.0 and fp32["passed"]  # float32 ONNX decodes what torch decodes
    assert report["runtimes"]["torch"]["exact_match"] == 1.0  # the trained replies, measured through the engine
    assert {p.name for p in result.files.values()} == {"decoder.fp32.onnx", "decoder.int4.onnx"}
    assert served_graph(run_dir, "onnx") == run_dir / RUN_EXPORT_DIR / "decoder.fp32.onnx"
    assert served_graph(run_dir, "torch") is None


def test_a_bad_quantisation_for_a_decoder_is_refused(run_dir):
    from goldmine.errors import ConfigError

    with pytest.raises(ConfigError, match="int4, int8, int4,int8 or none"):
        export_model(run_dir, quantize="int2")
    assert not (run_dir / RUN_EXPORT_DIR).exists()


def test_an_int8_export_holds_every_projection_in_8_bit_blocks(run_dir):
    export_model(run_dir, quantize="int8", force=True)
    manifest = json.loads((run_dir / RUN_EXPORT_DIR / "decoder.json").read_text())
    int8 = manifest["graphs"]["int8"]
    assert int8["bits"] == 8 and int8["matmuls"]["4bit"] == 0 and int8["matmuls"]["kept"] == 0
    assert int8["matmuls"]["8bit"] == 7 * manifest["layers"] + 1  # the projections and the output projection
    report = json.loads((run_dir / RUN_EXPORT_DIR / "parity.json").read_text())
    assert set(report["runtimes"]) == {"torch", "onnx", "onnx-int8"}
    # the tiny model's trained replies survive 8-bit weights
    assert report["runtimes"]["onnx-int8"]["exact_match"] == report["runtimes"]["torch"]["exact_match"]
    assert served_graph(run_dir, "onnx-int8") == run_dir / RUN_EXPORT_DIR / "decoder.int8.onnx"
    assert served_graph(run_dir, "auto") is not None


def test_int4_and_int8_export_together_and_auto_serves_the_fastest_that_passed(run_dir):
    export_model(run_dir, quantize="int4,int8", force=True)
    report = json.loads((run_dir / RUN_EXPORT_DIR / "parity.json").read_text())
    assert set(report["runtimes"]) == {"torch", "onnx", "onnx-int4", "onnx-int8"}
    candidates = {name: figures["tokens_per_s"] for name, figures in report["runtimes"].items()
                  if name != "torch" and figures["passed"]}
    assert "onnx" in candidates  # float32 ONNX always decodes what torch decodes
    best = max(candidates, key=candidates.get)
    assert served_graph(run_dir, "auto") == run_dir / RUN_EXPORT_DIR / RUN_FILES[best]
    for graph in ("decoder.fp32.onnx", "decoder.int4.onnx", "decoder.int8.onnx"):
        assert (run_dir / RUN_EXPORT_DIR / graph).is_file()


def test_a_server_decodes_on_the_export(run_dir, tmp_path, monkeypatch):
    from goldmine.serving.app import create_app
    from goldmine.serving.auth import create_key
    from goldmine.serving.db import open_database
    from goldmine.serving.registry import register
    from goldmine.serving.settings import load_settings

    export_model(run_dir)  # float32 graph only
    for name in [n for n in os.environ if n.startswith("GOLDMINE_")]:
        monkeypatch.delenv(name)
    settings = load_settings(data_dir=tmp_path / "serving", preload=False, inference_threads=1, runtime="onnx")
    db = open_database(settings)
    register(db, settings.registry_dir, "reviewer", run_dir, "acme")
    key = create_key(db, "acme", "predict").key
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                        json={"model": "reviewer", "messages": [{"role": "user", "content": "great film"}],
                              "temperature": 0})
        engine = next(iter(client.app.state.services.pool._loaded.values())).engine
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "positive"
    assert engine.runtime.name == "onnx-fp32"
    db.dispose()


def test_a_lora_runs_int4_graph_keeps_the_adapter_unmerged_in_float32(tmp_path, tiny_decoder_dir):
    import goldmine

    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"prompt": a, "response": b}) + "\n"
                             for a, b in [("great film", "positive"), ("awful film", "negative")] * 8))
    run = tmp_path / "lora"
    goldmine.train(None, **{"task": "causal_lm", "data.train": chats, "data.test": chats,
                            "model.name": str(tiny_decoder_dir), "output_dir": run, "model.max_length": 32,
                            "tuning.strategy": "lora", "tuning.lora.r": 4, "training.max_steps": 30,
                            "training.learning_rate": 3e-2, "training.eval_strategy": "none"})
    export_model(run, quantize="int4", force=True)
    manifest = json.loads((run / RUN_EXPORT_DIR / "decoder.json").read_text())
    int4 = manifest["graphs"]["int4"]
    assert int4["adapter"] == "unmerged (float32)"
    layers = manifest["layers"]
    assert int4["matmuls"]["kept"] == 2 * 7 * layers  # every projection's A and B stay float32
    assert int4["matmuls"]["4bit"] == 7 * layers  # the base projections in 4 bits
    report = json.loads((run / RUN_EXPORT_DIR / "parity.json").read_text())
    assert report["runtimes"]["onnx-int4"]["tokens_per_s"] > 0
