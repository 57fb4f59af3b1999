"""Runtime selection (`Model.load(..., runtime=...)`) and the onnxruntime backend, on exported tiny runs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import goldmine
from goldmine.errors import ConfigError, ModelError
from goldmine.inference.model import Model
from goldmine.inference.runtime import OnnxBackend, available_cores, resolve_runtime

TEXTS = ["where is my order?", "I lost my card in Tokyo, please block it", "refund",
         "Can I speak to a real person about my password? It keeps saying wrong password.", "hello there"]
NER_TEXTS = ["Anna Schmidt from Acme called about the X200 in Berlin.", "nothing to see", "Paris"]


def _copy(source, target):
    return shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "logs", "onnx*"))


@pytest.fixture(scope="module")
def classification_export(tiny_run, tmp_path_factory):
    """A copy of the tiny classification run with onnx + onnx-int8 exports (forced: the tiny run is untrained)."""
    from goldmine.export import export_model

    run = _copy(tiny_run("classification"), tmp_path_factory.mktemp("rt") / "clf")
    export_model(run, quantize="int8", force=True, sample_size=16, threads=1)
    return run


@pytest.fixture(scope="module")
def ner_export(tiny_run, tmp_path_factory):
    from goldmine.export import export_model

    run = _copy(tiny_run("ner"), tmp_path_factory.mktemp("rt") / "ner")
    export_model(run, force=True, sample_size=16, threads=1)
    return run


def test_auto_picks_the_fastest_export_present(classification_export, tiny_run, tmp_path):
    assert resolve_runtime(classification_export) == "onnx-int8"
    model = Model.load(classification_export, threads=1)
    assert model.runtime == "onnx-int8" and model.network is None
    assert model.describe_runtime() == {"runtime": "onnx-int8", "providers": ["CPUExecutionProvider"],
                                        "intra_op_threads": 1,
                                        "file": str(classification_export / "onnx" / "model.int8.onnx")}
    fp32_only = shutil.copytree(classification_export, tmp_path / "fp32")
    (fp32_only / "onnx" / "model.int8.onnx").unlink()
    assert Model.load(fp32_only, threads=1).runtime == "onnx"
    assert resolve_runtime(tiny_run("classification")) == "torch"
    assert Model.load(tiny_run("classification")).runtime == "torch"


def test_explicit_runtimes(classification_export):
    for runtime in ("torch", "onnx", "onnx-int8"):
        assert Model.load(classification_export, runtime=runtime, threads=1).runtime == runtime
    assert Model.load(classification_export, runtime="torch").describe_runtime()["runtime"] == "torch"


def test_unknown_or_missing_runtime_is_an_error(tiny_run):
    with pytest.raises(ConfigError, match="runtime 'gpu' is not one of auto, torch, onnx, onnx-int8"):
        Model.load(tiny_run("classification"), runtime="gpu")
    with pytest.raises(ModelError, match=r"no onnx-int8 export .*goldmine export .* --format onnx --quantize int8"):
        Model.load(tiny_run("classification"), runtime="onnx-int8")


def test_onnx_predictions_match_torch(classification_export):
    torch_results = Model.load(classification_export, runtime="torch", batch_size=2).predict(TEXTS)
    onnx_results = Model.load(classification_export, runtime="onnx", batch_size=2, threads=1).predict(TEXTS)
    for expected, got in zip(torch_results, onnx_results, strict=True):
        assert got["label"] == expected["label"]
        assert got["scores"] == pytest.approx(expected["scores"], abs=1e-5)


def test_onnx_entities_match_torch(ner_export):
    expected = Model.load(ner_export, runtime="torch").predict(NER_TEXTS)
    got = Model.load(ner_export, runtime="onnx", threads=1).predict(NER_TEXTS)
    for e, g in zip(expected, got, strict=True):
        assert [(x["type"], x["start"], x["end"]) for x in g["entities"]] == \
            [(x["type"], x["start"], x["end"]) for x in e["entities"]]


def test_eval_through_onnx_measures_what_torch_measures(classification_export, ner_export, demo_files, tmp_path):
    on_torch = goldmine.evaluate(classification_export, demo_files.intents, runtime="torch")
    on_onnx = goldmine.evaluate(classification_export, demo_files.intents, tmp_path / "out", runtime="onnx",
                                threads=1)
    assert on_onnx["accuracy"] == on_torch["accuracy"]
    assert on_onnx["confusion_matrix"] == on_torch["confusion_matrix"]
    assert on_torch["runtime"]["runtime"] == "torch"
    assert on_onnx["runtime"] == {"runtime": "onnx", "providers": ["CPUExecutionProvider"], "intra_op_threads": 1,
                                  "file": str(classification_export / "onnx" / "model.onnx")}
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["runtime"]["runtime"] == "onnx"
    ner_torch = goldmine.evaluate(ner_export, demo_files.ner, runtime="torch")
    ner_onnx = goldmine.evaluate(ner_export, demo_files.ner, runtime="onnx", threads=1)
    assert ner_onnx["f1"] == ner_torch["f1"] and ner_onnx["token_accuracy"] == ner_torch["token_accuracy"]


def test_a_stale_export_is_never_served(classification_export, tmp_path, caplog):
    run = shutil.copytree(classification_export, tmp_path / "retrained")
    weights = load_file(run / "model.safetensors")
    weights["classifier.bias"] = weights["classifier.bias"] + 1.0
    save_file(weights, run / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level("WARNING", logger="goldmine.inference.runtime"):
        model = Model.load(run)
    assert model.runtime == "torch"
    assert torch.allclose(model.network.classifier.bias, weights["classifier.bias"])
    assert "was exported from other weights" in caplog.text
    with pytest.raises(ModelError, match=r"exported from other weights .* run `goldmine export .*` again"):
        Model.load(run, runtime="onnx")


def test_ensemble_members_load_their_exports(classification_export, tmp_path):
    ensemble = goldmine.ensemble([classification_export, classification_export], tmp_path / "ens")
    model = Model.load(ensemble, threads=1)
    assert model.runtime == "onnx-int8"
    assert [m["runtime"] for m in model.describe_runtime()["members"]] == ["onnx-int8", "onnx-int8"]
    assert len(model.predict(TEXTS)) == len(TEXTS)
    assert Model.load(ensemble, runtime="torch").runtime == "torch"


def test_onnx_threads_default_to_the_usable_cores(classification_export):
    backend = OnnxBackend(classification_export / "onnx" / "model.onnx")
    assert backend.threads == available_cores()
    assert backend.describe()["providers"] == ["CPUExecutionProvider"]
