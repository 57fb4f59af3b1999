"""bench/serving.py's rules: which model it serves (and refusing when there is none), when its copy is stale, which
infinity configuration is the best, and the speedup target against it. The benchmark itself starts seven servers;
these are the parts its figures hang on."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_serving", ROOT / "bench" / "serving.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while they are built
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def trained_run(path: Path, weights: bytes = b"weights") -> Path:
    path.mkdir(parents=True)
    (path / "goldmine.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return path


@pytest.fixture
def layout(bench, tmp_path, monkeypatch):
    """bench/serving.py's paths moved under tmp_path: results/, the fallback run, the served copy."""
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "bench" / "results")
    monkeypatch.setattr(bench, "FALLBACK_SOURCE", tmp_path / "runs" / "bench" / "sst2")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    return tmp_path


def test_the_served_model_is_the_sst2_model_dir_of_accuracy_json(bench, layout):
    moved = trained_run(layout / "runs" / "bench" / "sst2" / "ensemble")
    trained_run(layout / "runs" / "bench" / "sst2" / "other")
    (layout / "bench" / "results" / "accuracy.json").write_text(
        json.dumps({"sst2": {"model_dir": "runs/bench/sst2/ensemble"}, "banking77": {"model_dir": "elsewhere"}}))
    assert bench.source_model(None) == moved.resolve()


def test_without_accuracy_json_the_fallback_run_is_served(bench, layout):
    fallback = trained_run(layout / "runs" / "bench" / "sst2")
    assert bench.source_model(None) == fallback.resolve()


def test_model_overrides_accuracy_json(bench, layout):
    (layout / "bench" / "results" / "accuracy.json").write_text(json.dumps({"sst2": {"model_dir": "missing"}}))
    chosen = trained_run(layout / "somewhere" / "sst2")
    assert bench.source_model(chosen) == chosen.resolve()


def test_a_missing_model_is_refused_with_where_it_was_looked_for_and_what_to_do(bench, layout):
    (layout / "bench" / "results" / "accuracy.json").write_text(json.dumps({"sst2": {"model_dir": "runs/gone"}}))
    with pytest.raises(SystemExit) as refused:
        bench.source_model(None)
    message = str(refused.value)
    assert str(layout / "runs" / "gone") in message
    assert "accuracy.json" in message and "bench/accuracy.py --only sst2" in message and "--model" in message


def test_a_directory_without_weights_is_refused(bench, layout):
    run = layout / "half"
    run.mkdir()
    (run / "goldmine.json").write_text("{}")
    with pytest.raises(SystemExit, match="model.safetensors"):
        bench.source_model(run)


def test_the_copy_is_current_only_for_the_same_source_and_weights(bench, tmp_path):
    source = trained_run(tmp_path / "a")
    stamp = {"source": str(source), "weights_sha256": bench.weights_digest(source)}
    copy = tmp_path / "copy"
    copy.mkdir()
    assert not bench.is_current(copy, stamp)  # never stamped
    (copy / ".bench-source.json").write_text(json.dumps(stamp))
    assert bench.is_current(copy, stamp)
    (source / "model.safetensors").write_bytes(b"retrained")
    assert not bench.is_current(copy, {"source": str(source), "weights_sha256": bench.weights_digest(source)})
    assert not bench.is_current(copy, {**stamp, "source": str(tmp_path / "b")})


def row(rps: float | None, p99: float | None = 100.0, **extra) -> dict:
    return {"throughput_rps": rps, "p99_ms": p99, "runtime": "r", **extra}


def test_infinity_best_is_the_fastest_configuration_that_ran(bench):
    results = {"goldmine": row(150.0), "naive": row(500.0),  # naive is no infinity configuration
               "infinity-torch": row(60.0, 900.0), "infinity-torch-int8": row(70.0, 800.0),
               "infinity-optimum": {"error": "could not start", "throughput_rps": None, "p99_ms": None},
               "infinity-optimum-int8": row(90.0, 450.0)}
    best = bench.infinity_best(results)
    assert (best["config"], best["requests_per_s"], best["p99_ms"]) == ("infinity-optimum-int8", 90.0, 450.0)
    assert bench.infinity_best({"infinity-torch": {"error": "x", "throughput_rps": None}}) is None


def test_the_target_needs_the_ratio_and_a_lower_p99(bench):
    results = {"goldmine": row(150.0, 400.0), "infinity-torch": row(60.0, 900.0), "naive": row(40.0, 1500.0)}
    results["infinity_best"] = bench.infinity_best(results)
    targets = bench.summarise(results)
    assert targets["infinity_best"] == {"throughput_ratio": 2.5, "lower_p99": True, "required_ratio": 1.5,
                                        "met": True}
    assert targets["naive"]["met"] is True and targets["naive"]["throughput_ratio"] == 3.75
    assert "met" not in targets["infinity-torch"]  # per-configuration ratios are reported, the target is the best's

    results["goldmine"] = row(150.0, 950.0)  # fast enough, but a worse tail
    assert bench.summarise(results)["infinity_best"]["met"] is False
    results["goldmine"] = row(89.0, 400.0)  # a lower tail, but under 1.5x
    assert bench.summarise(results)["infinity_best"] == {"throughput_ratio": 1.48, "lower_p99": True,
                                                         "required_ratio": 1.5, "met": False}


def test_every_server_has_a_request_format(bench):
    assert {bench.kind_of(name) for name in bench.SERVERS} == set(bench.KINDS)
    assert bench.kind_of("infinity-optimum-int8") == "infinity" and bench.kind_of("goldmine-torch") == "goldmine"


def test_the_report_names_the_best_infinity_configuration_and_why_a_configuration_did_not_run(bench, tmp_path,
                                                                                             monkeypatch):
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    measured = {"p50_ms": 90.0, "p90_ms": 120.0, "non_200": 0, "server_cores_busy": 1.5, "loadgen_cores_busy": 0.1,
                "server_os_threads": 12, "served": {"dev_accuracy": 0.88}, "rounds": []}
    results = {"goldmine": row(150.0, 400.0, usage_records_lost=0, usage={"answered_ok": 9, "records": 9},
                               **measured),
               "infinity-torch-int8": row(90.0, 450.0, **measured),
               "infinity-optimum": {"error": "optimum's ONNX export failed", "throughput_rps": None, "p99_ms": None}}
    results["infinity_best"] = bench.infinity_best(results)
    results.update(speedup_vs_infinity_best=1.67, usage_records_lost=0, targets=bench.summarise(results),
                   git_commit="abc123", git_dirty=False, command="python bench/serving.py",
                   load={"model": "runs/bench-serving/sst2", "source": "runs/bench/sst2", "concurrency": 32,
                         "rounds": 3, "warmup_s": 3.0, "duration_s": 10.0, "client": "c"},
                   machine={"cpu": "cpu", "cores": 2, "memory_gib": 1, "date": "d", "versions": {}})
    bench.write(results)
    written = json.loads((tmp_path / "serving.json").read_text())
    assert written["infinity_best"]["config"] == "infinity-torch-int8" and written["git_commit"] == "abc123"
    report = (tmp_path / "serving.md").read_text()
    assert "Best infinity configuration: **infinity-torch-int8** (90.0 req/s, p99 450.0 ms)" in report
    assert "**1.67x**" in report and "Commit abc123" in report
    assert "| infinity-optimum | - | not measured: optimum's ONNX export failed |" in report
    assert "goldmine: 9 answered, 9 records" in report


def test_batching_is_read_from_the_servers_own_metrics(bench):
    from goldmine.serving.metrics import Metrics

    metrics = Metrics()
    assert bench.batching_from_metrics(metrics.render()[0].decode()) == {"forward_passes": 0}
    for texts, seconds in ((4, 0.010), (2, 0.020), (3, 0.030)):
        metrics.batch_size.labels("sst2").observe(texts)
        metrics.batch_seconds.labels("sst2").observe(seconds)
    assert bench.batching_from_metrics(metrics.render()[0].decode()) == {
        "forward_passes": 3, "texts_per_pass_mean": 3.0, "pass_ms_mean": 20.0}


@pytest.mark.parametrize("name, runtime", [("goldmine", "onnx-int8"), ("goldmine-torch", "torch")])
def test_a_goldmine_server_is_set_up_with_its_model_key_and_settings(bench, tmp_path, tiny_run, name, runtime):
    from goldmine.export import export_model

    served = tmp_path / "served"
    shutil.copytree(tiny_run("classification"), served)
    export_model(served, quantize="int8", force=True, threads=1)
    server = bench.goldmine_server(name, served, tmp_path / "state")
    assert server.describe["runtime"] == runtime
    assert server.describe["compute_threads"].endswith(
        "1 onnxruntime intra-op thread" if runtime != "torch" else "1 torch intra-op thread")
    assert server.env["GOLDMINE_DATA_DIR"] == str(tmp_path / "state")
    assert server.env.get("GOLDMINE_RUNTIME") == ("torch" if name == "goldmine-torch" else None)
    assert server.headers["Authorization"].startswith("Bearer gm_")
    assert (tmp_path / "state").is_dir()
