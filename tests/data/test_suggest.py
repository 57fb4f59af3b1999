"""`goldmine data suggest`: the most uncertain text of each embedding cluster, read from an unlabeled file whose bad
lines are reported."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from goldmine.cli import app
from goldmine.data.suggest import choose, margins, read_texts, suggest
from goldmine.errors import DataError, InputError
from goldmine.inference.model import Model


def test_texts_are_read_from_txt_jsonl_and_csv(tmp_path):
    (tmp_path / "a.txt").write_text("first text\n\nsecond text\n")
    (tmp_path / "a.jsonl").write_text('{"text": "first"}\n{"text": "second", "id": 3}\n')
    (tmp_path / "a.csv").write_text("id,text\n1,first\n2,\"second, with a comma\"\n")
    assert [(t.line, t.text) for t in read_texts(tmp_path / "a.txt")] == [(1, "first text"), (3, "second text")]
    assert [t.text for t in read_texts(tmp_path / "a.jsonl")] == ["first", "second"]
    assert [(t.line, t.text) for t in read_texts(tmp_path / "a.csv")] == [(2, "first"), (3, "second, with a comma")]


def test_every_bad_line_is_reported_at_its_place(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"text": \n{"body": "x"}\n{"text": "  "}\n{"text": 5}\n')
    with pytest.raises(DataError) as err:
        read_texts(path)
    assert [(i.line, i.reason.split(" (")[0]) for i in err.value.issues] == [
        (2, "invalid JSON: Expecting value"), (3, "no 'text' field"), (4, "empty text"),
        (5, "text must be a string, got int")]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="no texts in the file"):
        read_texts(tmp_path / "empty.txt")
    (tmp_path / "cols.csv").write_text("body\nx\n")
    with pytest.raises(DataError, match="no 'text' column"):
        read_texts(tmp_path / "cols.csv")


def test_margins_single_and_multi_label():
    np.testing.assert_allclose(margins(np.array([[0.6, 0.3, 0.1], [0.34, 0.33, 0.33]])), [0.3, 0.01], atol=1e-9)
    np.testing.assert_allclose(margins(np.array([[0.9, 0.45], [0.99, 0.02]]), multi_label=True), [0.1, 0.96],
                               atol=1e-9)


def test_one_text_per_cluster_the_least_sure_ranked_first():
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0], [0, 10.0], [-10.0, -10.0]])
    embeddings = np.concatenate([c + rng.normal(size=(30, 2)) for c in centres])
    margin = rng.uniform(0.2, 1.0, size=90)
    margin[[5, 40, 70]] = [0.05, 0.01, 0.1]  # the least sure of each blob
    margin[[6, 7]] = [0.06, 0.07]  # sure-ish but in the first blob again: diversity leaves them out
    chosen, clusters = choose(embeddings, margin, top=3)
    assert chosen.tolist() == [40, 5, 70] and len(set(clusters.tolist())) == 3


def test_suggest_ranks_a_models_unlabeled_texts(tiny_run, demo_files, tmp_path):
    run = tiny_run("classification")
    texts = read_texts(demo_files.intents)  # a CSV with a text column: its labels are ignored
    chosen = suggest(Model.load(run, runtime="torch"), texts, top=10)
    assert len(chosen) == 10 and len({s.line for s in chosen}) == 10
    assert [s.margin for s in chosen] == sorted(s.margin for s in chosen)
    by_line = {t.line: t.text for t in texts}
    assert all(by_line[s.line] == s.text for s in chosen)
    with pytest.raises(InputError, match="top: give at least 1"):
        suggest(Model.load(run, runtime="torch"), texts, top=0)


def test_the_cli_writes_the_suggestions_for_labelling(tiny_run, demo_files, tmp_path):
    out = tmp_path / "to_label.jsonl"
    result = CliRunner().invoke(app, ["data", "suggest", str(tiny_run("classification")), str(demo_files.intents),
                                      "--out", str(out), "--top", "5", "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and all(row["label"] == "" and row["text"] for row in rows)


def test_the_cli_names_a_bad_line(tiny_run, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    result = CliRunner().invoke(app, ["data", "suggest", str(tiny_run("classification")), str(bad), "--out",
                                      str(tmp_path / "o.jsonl")])
    assert result.exit_code != 0 and f"{bad}:2" in result.output
    assert not (tmp_path / "o.jsonl").exists()
