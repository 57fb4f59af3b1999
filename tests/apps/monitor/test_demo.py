"""The demo runs offline end to end on the data it writes (here on the tiny BERT instead of the bundled MiniLM)."""

from __future__ import annotations

import json

from goldmine.apps.monitor import demo


def test_demo_end_to_end(tmp_path, tiny_model_dir):
    result = demo.run_demo(tmp_path / "demo", base_model=str(tiny_model_dir), quick=True)
    assert result.items > 700 and [i.split(":", 2)[1] for i in result.issues] == ["7", "40"]
    assert result.report.is_file() and len(list(result.report.parent.glob("*.png"))) == len(demo.COMPANIES)
    assert (tmp_path / "demo" / "serving" / "goldmine.db").is_file()


def test_synthetic_stream_is_reproducible_and_scripted(tmp_path):
    a = demo.write_stream(tmp_path / "a.jsonl").read_text()
    assert a == demo.write_stream(tmp_path / "b.jsonl").read_text()
    rows = [json.loads(line) for line in a.splitlines() if line.startswith('{"time": "2026-04-0')]
    tailspin = [r for r in rows if "Tailspin" in r["text"] or r.get("tickers") == ["TAIL"]]
    assert len(tailspin) > 20  # the crisis days are busy
