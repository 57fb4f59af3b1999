"""`goldmine export` and `--runtime` on `eval`/`predict` through typer's CliRunner: exit codes and output."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from goldmine import cli

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 400)
    monkeypatch.setattr(cli.err_console, "width", 400)


def invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def test_export_help_lists_the_options():
    result = invoke("export", "--help")
    assert result.exit_code == 0
    for option in ("--format", "--quantize", "--force", "--max-loss", "--data", "--sample", "--threads"):
        assert option in result.output


def test_export_gate_failure_exits_3_and_force_keeps_it(fresh_copy, demo_files):
    run = fresh_copy("classification")
    result = invoke("export", run, "--format", "onnx", "--max-loss", "-1", "--sample", "20", "--threads", "1")
    assert result.exit_code == 3, result.output
    assert "Parity on 20 examples" in result.output
    assert "export rejected: onnx loses 0.00 points of accuracy" in result.output
    assert not (run / "onnx" / "model.onnx").exists()

    result = invoke("export", run, "--max-loss", "-1", "--sample", "20", "--threads", "1", "--force")
    assert result.exit_code == 0, result.output
    assert "kept because of --force" in result.output
    assert f"exported onnx -> {run / 'onnx'}" in result.output
    assert json.loads((run / "onnx" / "parity.json").read_text())["forced"] is True

    result = invoke("eval", run, demo_files.intents, "--runtime", "onnx", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "runtime: onnx (CPUExecutionProvider, 1 threads)" in result.output

    result = invoke("predict", run, "--text", "where is my parcel?", "--runtime", "onnx-int8")
    assert result.exit_code == 2
    assert "has no onnx-int8 export (onnx/model.int8.onnx); run `goldmine export" in result.output


def test_export_int8_exit_0_and_prints_parity(fresh_copy):
    run = fresh_copy("ner")
    result = invoke("export", run, "--quantize", "int8", "--max-loss", "100", "--sample", "10", "--threads", "1")
    assert result.exit_code == 0, result.output
    for text in ("Parity on 10 examples", "torch", "onnx-int8", "reference", "pass", "time by kernel",
                 "CPUExecutionProvider", "int8 GEMMs on the", "exported onnx, onnx-int8"):
        assert text in result.output
    predictions = invoke("predict", run, "--text", "Anna works at Acme in Berlin", "--runtime", "onnx-int8")
    assert predictions.exit_code == 0, predictions.output
    assert "entities" in json.loads(predictions.output.strip().splitlines()[-1])


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "tflite"], "format 'tflite' is not supported"),
    (["--quantize", "int4"], "quantize 'int4' is not supported"),
])
def test_export_bad_options_exit_2(tiny_run, args, message):
    result = invoke("export", tiny_run("classification"), *args)  # rejected before anything is written
    assert result.exit_code == 2
    assert message in result.output


def test_export_of_a_missing_directory_exits_2(tmp_path):
    result = invoke("export", tmp_path / "nope")
    assert result.exit_code == 2
    assert "is not a goldmine model directory" in result.output


def test_eval_with_an_unknown_runtime_exits_2(tiny_run, demo_files):
    result = invoke("eval", tiny_run("classification"), demo_files.intents, "--runtime", "tensorrt")
    assert result.exit_code == 2
    assert "runtime 'tensorrt' is not one of auto, torch, onnx, onnx-int8" in result.output
