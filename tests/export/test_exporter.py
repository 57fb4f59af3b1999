"""`goldmine.export`: ONNX graphs of every task, int8, the parity report and the gate, on tiny runs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from goldmine.errors import ConfigError, ModelError
from goldmine.export import ExportResult, ParityError, export_model
from goldmine.export import quantize as quantization
from goldmine.inference.model import Model
from goldmine.inference.runtime import weights_fingerprint

TEXTS = [
    "where is my order?",
    "Hi, I ordered a coffee machine last Friday and it still has not arrived in Berlin, the tracking page says "
    "nothing and I want to cancel the order and get my money back.",
    "refund",
    "I lost my card in Tokyo, please block it",
    "Can I speak to a real person about my password?",
    "hello there",
    "my payment failed twice",
]
PAIRS = ["is it late?", "a second text", "x", "where", "card", "talk to a human please", "ok"]


def logits_by_example(model: Model, features: list[dict]) -> list[np.ndarray]:
    """Each example's logits, without padding positions."""
    out: dict[int, np.ndarray] = {}
    for idx, logits in model.iter_logits(features):
        for i, row in zip(idx, logits, strict=True):
            out[int(i)] = row[: len(features[i]["input_ids"])] if row.ndim == 2 else row
    return [out[i] for i in range(len(features))]


def features_for(model: Model, texts: list[str], texts_b: list[str] | None = None) -> list[dict]:
    if model.task.name == "ner":
        enc = model.task.tokenizer(texts, truncation=True, max_length=model.meta.max_length)
    else:
        enc = model.task.tokenize(texts, texts_b)
    return [{k: enc[k][i] for k in enc} for i in range(len(texts))]


def assert_onnx_matches_torch(run, texts, texts_b=None, runtime="onnx", atol=1e-4):
    torch_model = Model.load(run, batch_size=3, runtime="torch")  # batches of 3, 3, 1: several shapes
    onnx_model = Model.load(run, batch_size=3, runtime=runtime, threads=1)
    assert onnx_model.runtime == runtime and onnx_model.network is None
    features = features_for(torch_model, texts, texts_b)
    for expected, got in zip(logits_by_example(torch_model, features), logits_by_example(onnx_model, features),
                             strict=True):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("task", ["classification", "multilabel", "ner"])
def test_export_writes_graphs_with_dynamic_axes(exported, task):
    run = exported(task)
    for name in ("model.onnx", "model.int8.onnx", "manifest.json", "parity.json"):
        assert (run / "onnx" / name).is_file()
    assert not (run / "onnx.partial").exists()
    graph = onnx.load(run / "onnx" / "model.onnx", load_external_data=False).graph
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert inputs == {name: ["batch", "sequence"] for name in ("input_ids", "attention_mask", "token_type_ids")}
    outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output}
    num_labels = len(Model.load(run, runtime="torch").labels)
    if task == "ner":
        assert outputs == {"logits": ["batch", "sequence", num_labels]}
    else:  # the pooled sentence embedding too (zero-shot labels per request, search), from the same pass
        assert outputs == {"logits": ["batch", num_labels], "sentence_embedding": ["batch", 32]}
    manifest = json.loads((run / "onnx" / "manifest.json").read_text())
    assert manifest["files"] == {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
    assert manifest["weights_sha256"] == weights_fingerprint(run)
    scheme = manifest["quantization"]["scheme"]  # the tiny runs' flat logits may send auto on to "mixed"
    assert manifest["quantization"]["weights"] == quantization.scheme_settings(scheme)["weights"]


@pytest.mark.parametrize("task", ["classification", "multilabel", "ner"])
def test_onnx_logits_equal_torch(exported, task):
    assert_onnx_matches_torch(exported(task), TEXTS)


def test_onnx_pairs_equal_torch(exported):
    """Text pairs: token_type_ids reach the graph."""
    assert_onnx_matches_torch(exported("classification"), TEXTS, PAIRS)


def test_int8_graph_is_quantised_and_close(exported):
    run = exported("classification")
    ops = {node.op_type for node in onnx.load(run / "onnx" / "model.int8.onnx").graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    # Measured max |logit error|: 0.0020, the same under AVX2 (emulated) and AVX-512 VNNI kernels, thanks to the
    # 7-bit weights (tests/export/test_portability.py). With 8-bit weights AVX2's saturating int16 sums gave
    # 0.052 here, which this bound rejects: it is 25x the error int8 makes, and below what a broken kernel makes.
    assert_onnx_matches_torch(run, TEXTS, runtime="onnx-int8", atol=0.05)


@pytest.mark.parametrize("task", ["classification", "multilabel", "ner"])
def test_parity_report(exported, task):
    report = json.loads((exported(task) / "onnx" / "parity.json").read_text())
    assert report["task"] == task
    assert report["metric"] == {"classification": "accuracy", "multilabel": "micro_f1", "ner": "f1"}[task]
    assert report["data"].endswith("[dev split]")  # the run's own dev split, cut again from its training file
    assert report["examples"] == (50 if task == "ner" else 93)
    assert list(report["runtimes"]) == ["torch", "onnx", "onnx-int8"]
    assert report["max_loss_points"] == 0.5
    onnx_figures = report["runtimes"]["onnx"]
    assert onnx_figures["max_abs_logit_diff"] < 1e-4
    assert onnx_figures["label_agreement"] == 1.0
    assert onnx_figures["metric"] == pytest.approx(report["runtimes"]["torch"]["metric"])
    assert onnx_figures["metric_loss_points"] == pytest.approx(0.0, abs=1e-9)
    assert onnx_figures["passed"] is True
    int8 = report["runtimes"]["onnx-int8"]
    assert 0 < int8["max_abs_logit_diff"] < 0.5
    loss = (report["runtimes"]["torch"]["metric"] - int8["metric"]) * 100
    assert int8["metric_loss_points"] == pytest.approx(loss, abs=1e-4)  # rounded to 4 places
    for name in ("onnx", "onnx-int8"):
        kernels = report["runtimes"][name]["kernels"]
        assert kernels["providers"] == ["CPUExecutionProvider"]
        assert kernels["intra_op_threads"] == 1
        assert sum(op["share"] for op in kernels["ops"].values()) == pytest.approx(1.0, abs=1e-3)
    assert any("MatMul" in op for op in report["runtimes"]["onnx-int8"]["kernels"]["ops"])
    assert report["machine"]["cores"] >= 1 and "int8_gemm" in report["machine"]


def test_trained_run_int8_agrees_and_passes_the_gate(trained_run, demo_files, tmp_path):
    """On 93 dev examples one changed prediction is 1.1 points, more than the default 0.5: a 32-wide model is
    not a fair test of int8 against that limit (the MiniLM runs are), so the limit here is 5 points."""
    from goldmine.data.readers import read_file

    result = export_model(trained_run, quantize="int8", threads=1, max_loss=5)
    assert isinstance(result, ExportResult)
    assert result.passed and not result.forced
    assert set(result.files) == {"onnx", "onnx-int8"}
    report = result.report
    assert report["one_example_points"] == pytest.approx(100 / 93, abs=1e-4)
    assert report["runtimes"]["onnx-int8"]["metric_loss_points"] <= 5
    assert report["runtimes"]["torch"]["metric"] > 0.3  # trained: well above the 0.13 of the majority class
    assert report["runtimes"]["onnx-int8"]["label_agreement"] >= 0.9
    texts = [ex.text for ex in read_file(demo_files.intents).examples]
    torch_model = Model.load(trained_run, runtime="torch")
    int8_model = Model.load(trained_run, runtime="onnx-int8", threads=1)
    features = features_for(torch_model, texts)
    torch_logits = np.stack(logits_by_example(torch_model, features))
    int8_logits = np.stack(logits_by_example(int8_model, features))
    error = np.abs(int8_logits - torch_logits).max()
    assert error < 0.05  # measured 0.008 on AVX2 and VNNI kernels alike; 8-bit weights on AVX2 gave 0.26
    # What int8 guarantees: when no logit moves by more than `error`, a label whose lead over the runner-up is more
    # than 2 * error cannot change. A decoding or ordering fault would break this; a few close calls may flip.
    ranked = np.sort(torch_logits, axis=-1)
    clear = ranked[:, -1] - ranked[:, -2] > 2 * error
    assert clear.mean() > 0.8  # trained well enough that most labels are clear of int8's error
    torch_labels = [p["label"] for p in torch_model.predict(texts)]
    int8_labels = [p["label"] for p in int8_model.predict(texts)]
    same = np.array([a == b for a, b in zip(torch_labels, int8_labels, strict=True)])
    assert same[clear].all()
    assert same.mean() >= 0.9  # measured 0.998 (8-bit weights on AVX2: 0.939)


def _negate_logits(path):
    """Degrade a graph: its logits come out negated, so argmax becomes argmin."""
    model = onnx.load(path)
    for node in model.graph.node:
        for k, name in enumerate(node.output):
            if name == "logits":
                node.output[k] = "logits_before_neg"
    model.graph.node.append(onnx.helper.make_node("Neg", ["logits_before_neg"], ["logits"]))
    onnx.save(model, path)


def test_gate_rejects_a_degraded_int8_model_unless_forced(trained_run, copy_of, monkeypatch):
    run = copy_of(trained_run)
    real = quantization.quantize_int8

    def degraded(source, target, scheme="full"):
        info = real(source, target, scheme)
        _negate_logits(target)
        return info

    monkeypatch.setattr(quantization, "quantize_int8", degraded)
    with pytest.raises(ParityError, match=r"export rejected: onnx-int8 loses \d+\.\d\d points of accuracy") as err:
        export_model(run, quantize="int8", threads=1)
    assert "onnx loses" not in str(err.value)  # the fp32 graph is fine
    assert str(err.value).endswith("or raise --max-loss, or export without --quantize.")
    figures = err.value.report["runtimes"]
    assert figures["onnx"]["passed"] is True and figures["onnx-int8"]["passed"] is False
    assert figures["onnx-int8"]["metric_loss_points"] > 10
    assert figures["onnx-int8"]["label_agreement"] < 0.5
    assert not (run / "onnx" / "model.int8.onnx").exists()
    assert [a["scheme"] for a in err.value.report["int8"]["attempts"]] == ["full", "mixed-1", "mixed"]  # all tried

    result = export_model(run, quantize="int8", threads=1, force=True)
    assert (result.passed, result.forced) == (False, True)
    assert result.report["runtimes"]["onnx-int8"]["passed"] is False
    assert (run / "onnx" / "model.int8.onnx").is_file()


def test_auto_scheme_falls_back_to_mixed_when_full_fails_the_gate(trained_run, copy_of, monkeypatch):
    run = copy_of(trained_run)
    real = quantization.quantize_int8

    def full_is_broken(source, target, scheme="full"):  # and mixed-1: only all down-projections in fp32 pass
        info = real(source, target, scheme)
        if scheme != "mixed":
            _negate_logits(target)
        return info

    monkeypatch.setattr(quantization, "quantize_int8", full_is_broken)
    result = export_model(run, quantize="int8", threads=1, max_loss=5)
    assert result.passed and not result.forced
    int8 = result.report["int8"]
    assert int8["scheme"] == "mixed"
    assert [(a["scheme"], a["passed"]) for a in int8["attempts"]] == [("full", False), ("mixed-1", False),
                                                                      ("mixed", True)]
    assert result.report["runtimes"]["onnx-int8"]["passed"] is True
    manifest = json.loads((run / "onnx" / "manifest.json").read_text())
    assert manifest["quantization"]["scheme"] == "mixed"
    assert manifest["quantization"]["nodes_kept_fp32"] == 2  # one FFN down-projection per layer of the tiny BERT


def test_mixed_scheme_keeps_the_ffn_down_projections_in_fp32(exported, tmp_path):
    source = exported("classification") / "onnx" / "model.onnx"
    graph = onnx.load(source).graph
    down = quantization.ffn_down_projections(graph)
    assert len(down) == 2  # the tiny BERT has two layers, one GELU each
    info = quantization.quantize_int8(source, tmp_path / "mixed.onnx", "mixed")
    assert info["scheme"] == "mixed" and info["nodes_kept_fp32"] == 2
    quantised = onnx.load(tmp_path / "mixed.onnx").graph
    still_fp32 = {n.name for n in quantised.node if n.op_type == "MatMul"}
    assert set(down) <= still_fp32
    assert sum(n.op_type == "MatMulInteger" for n in quantised.node) > 0
    quantization.quantize_int8(source, tmp_path / "full.onnx", "full")
    full = onnx.load(tmp_path / "full.onnx").graph
    assert not set(down) & {n.name for n in full.node if n.op_type == "MatMul"}  # full quantises them


def test_auto_stops_at_the_first_partial_scheme_the_gate_accepts(trained_run, copy_of, monkeypatch):
    run = copy_of(trained_run)
    real = quantization.quantize_int8

    def only_full_is_broken(source, target, scheme="full"):
        info = real(source, target, scheme)
        if scheme == "full":
            _negate_logits(target)
        return info

    monkeypatch.setattr(quantization, "quantize_int8", only_full_is_broken)
    result = export_model(run, quantize="int8", threads=1, max_loss=5)
    assert [(a["scheme"], a["passed"]) for a in result.report["int8"]["attempts"]] == [("full", False),
                                                                                       ("mixed-1", True)]
    manifest = json.loads((run / "onnx" / "manifest.json").read_text())
    assert (manifest["quantization"]["scheme"], manifest["quantization"]["nodes_kept_fp32"]) == ("mixed-1", 1)


def test_partial_scheme_keeps_only_the_first_down_projections_in_fp32(exported, tmp_path):
    source = exported("classification") / "onnx" / "model.onnx"
    first, second = quantization.ffn_down_projections(onnx.load(source).graph)
    info = quantization.quantize_int8(source, tmp_path / "mixed-1.onnx", "mixed-1")
    assert info["nodes_kept_fp32"] == 1 and "first 1 FFN down-projections" in info["kept_fp32"]
    still_fp32 = {n.name for n in onnx.load(tmp_path / "mixed-1.onnx").graph.node if n.op_type == "MatMul"}
    assert first in still_fp32 and second not in still_fp32


@pytest.mark.parametrize(("requested", "layers", "expected"), [
    ("auto", 6, ["full", "mixed-1", "mixed-2", "mixed-3", "mixed-4", "mixed-5", "mixed"]),
    ("auto", 1, ["full", "mixed"]),
    ("mixed-3", 6, ["mixed-3"]),
])
def test_schemes_to_try_fastest_first(requested, layers, expected):
    assert quantization.schemes_to_try(requested, layers) == expected


@pytest.mark.parametrize("name", ["mixed-0", "mixed-", "mixed-x", "fp4"])
def test_malformed_scheme_names_are_refused(name):
    with pytest.raises(ConfigError, match=f"int8 scheme '{name}' is not one of auto, full, mixed-K"):
        quantization.check_scheme(name)


def test_unknown_int8_scheme_is_a_config_error(tiny_run):
    with pytest.raises(ConfigError, match="int8 scheme 'fp4' is not one of auto, full, mixed-K"):
        export_model(tiny_run("classification"), quantize="int8", int8_scheme="fp4")


def test_gate_fails_with_negative_max_loss_and_keeps_the_previous_export(exported, copy_of):
    run = copy_of(exported("classification"), keep_exports=True)
    accepted = (run / "onnx" / "parity.json").read_text()
    with pytest.raises(ParityError, match=r"onnx loses 0\.00 points of accuracy .* the limit is -1\.0 points") as err:
        export_model(run, max_loss=-1.0, threads=1, sample_size=20)
    assert "Pass --force to keep it anyway, or raise --max-loss." in str(err.value)
    assert err.value.report["passed"] is False
    assert not (run / "onnx.partial").exists()
    assert (run / "onnx" / "parity.json").read_text() == accepted  # the earlier export still serves
    assert Model.load(run, threads=1).runtime == "onnx-int8"
    rejected = json.loads((run / "onnx" / "parity.rejected.json").read_text())
    assert rejected["runtimes"]["onnx"]["passed"] is False and rejected["examples"] == 20

    result = export_model(run, max_loss=-1.0, threads=1, sample_size=20, force=True)
    assert (result.passed, result.forced) == (False, True)
    report = json.loads((run / "onnx" / "parity.json").read_text())
    assert (report["passed"], report["forced"]) == (False, True)
    assert sorted(p.name for p in (run / "onnx").iterdir()) == ["manifest.json", "model.onnx", "parity.json"]
    assert Model.load(run, threads=1).runtime == "onnx"


def test_lora_run_exports_merged(tmp_path, demo_files, tiny_model_dir):
    import goldmine

    run = tmp_path / "lora"
    goldmine.train(None, **{
        "task": "classification", "data.train": demo_files.intents, "model.name": str(tiny_model_dir),
        "output_dir": run, "tuning.strategy": "lora", "tuning.lora.target_modules": ["query", "value"],
        "training.max_steps": 2, "training.batch_size": 8, "training.eval_strategy": "none",
        "training.linear_probe": False,
    })
    assert Model.load(run, runtime="torch").meta.adapter
    result = export_model(run, threads=1, sample_size=16, max_loss=100)
    assert result.report["runtimes"]["onnx"]["max_abs_logit_diff"] < 1e-4
    assert_onnx_matches_torch(run, TEXTS)


def test_parity_sample_from_a_given_file_when_the_run_data_is_gone(fresh_copy, demo_files, tmp_path):
    run = fresh_copy("classification")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace(str(demo_files.intents), str(tmp_path / "moved.csv")))
    with pytest.raises(ModelError, match=r"cannot read the data .* pass a labeled sample instead \(--data FILE\)"):
        export_model(run, threads=1)
    result = export_model(run, data=demo_files.intents, sample_size=25, threads=1, max_loss=100)
    assert result.report["examples"] == 25
    assert result.report["data"] == f"{demo_files.intents} (25 of 933)"


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"format": "tflite"}, ConfigError, "format 'tflite' is not supported; choose one of onnx"),
    ({"quantize": "int4"}, ConfigError, "quantize 'int4' is not supported; choose one of int8"),
    ({"sample_size": 0}, ConfigError, "sample size must be at least 1"),
])
def test_export_rejects_bad_options(tiny_run, kwargs, error, message):
    with pytest.raises(error, match=message):
        export_model(tiny_run("classification"), **kwargs)  # rejected before anything is written


def test_export_of_an_ensemble_asks_for_its_members(tiny_run, tmp_path):
    import goldmine

    ensemble = goldmine.ensemble([tiny_run("classification")], tmp_path / "ens")
    with pytest.raises(ModelError, match="is an ensemble: export each member run"):
        export_model(ensemble)


def test_the_package_is_callable_as_the_api_function(monkeypatch):
    """`goldmine.export` names both this package and the API function: calling the package exports."""
    import goldmine.export
    import goldmine.export.exporter

    calls = []
    monkeypatch.setattr(goldmine.export.exporter, "export_model", lambda *a, **k: calls.append((a, k)) or "done")
    assert goldmine.export("runs/x", quantize="int8") == "done"
    assert calls == [(("runs/x",), {"quantize": "int8"})]
