"""bench/apps_support.py's rules on a tiny model and a few invented rows: the metrics' definitions, the hash split,
and datasets without a trained model reported as missing (the benchmark itself needs models trained for hours)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_apps_support", ROOT / "bench" / "apps_support.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while they are built
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_metrics_on_a_tiny_model(bench, tmp_path, monkeypatch, demo_files, tiny_run):
    from goldmine.data.readers import read_file

    examples = read_file(demo_files.intents).examples
    rows = [{"text": e.text, "label": e.labels[0]} for e in examples[:60]]
    rows += [{"text": t, "label": "oos"} for t in ("what is the capital of peru", "play some jazz")]
    (tmp_path / "toy").mkdir()
    for name in ("train", "dev"):
        (tmp_path / "toy" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(bench, "DATA", tmp_path)
    toy = bench.Dataset("toy", "toy/train.jsonl", "toy/dev.jsonl", oos="oos", handoff_intents=("talk_to_human",))
    monkeypatch.setitem(bench.DATASETS, "toy", toy)
    run = tiny_run("classification")
    result = bench.measure("toy", run, None)
    counts = result["counts"]
    assert result["texts"] == 62 and counts["in_scope"] == 60 and counts["oos"] == 2
    truth = 2 + sum(r["label"] == "talk_to_human" for r in rows)
    assert counts["tp"] + counts["fn"] == truth
    assert result["intent_accuracy"] == round(counts["intent_right"] / 60, 4)
    assert result["answered"] == round(counts["answered"] / 62, 4)
    assert 0 <= result["handoff_f1"] <= 1 and result["oos_recall"] in (0.0, 0.5, 1.0)
    section = bench.support_section(tmp_path / "runs", ["toy", "banking77"], serve=False)
    assert set(section["missing"]) == {"toy", "banking77"} and section["intent_accuracy"] is None


def test_the_bitext_split_is_by_text(bench):
    texts = [f"where is order {i}" for i in range(2000)]
    held = [t for t in texts if bench.held_out(t)]
    assert 150 < len(held) < 250 and held == [t for t in texts if bench.held_out(t)]
