"""Search indexes: built from a corpus with a model, stored beside it, searched by cosine similarity, updated without
embedding the rest again, refused with another model; bad corpora reported by line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from goldmine.cli import app
from goldmine.errors import DataError, InputError
from goldmine.inference.model import Model
from goldmine.retrieval import index as index_module
from goldmine.retrieval.index import Entry, Index, IndexUnusable, read_corpus

FAQ = [
    {"id": "refund", "question": "how do i get my money back", "answer": "Open Orders, then Refund."},
    {"id": "track", "question": "where is my parcel", "answer": "Track it under Orders."},
    {"id": "password", "question": "i forgot my password", "answer": "Use Reset password on the login page."},
]


def corpus(tmp_path, rows=FAQ, name="faq.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def run(tiny_run, tmp_path):
    """A private copy of the tiny classification run (indexes are written inside it)."""
    return shutil.copytree(tiny_run("classification"), tmp_path / "run")


def test_an_entry_finds_itself_first_with_its_payload(run, tmp_path):
    index = Index.build(run, corpus(tmp_path), name="faq")
    assert index.directory == run / "indexes" / "faq" and index.meta["count"] == 3
    loaded = Index.load(run / "indexes" / "faq")
    for row, hits in zip(FAQ, loaded.search([r["question"] for r in FAQ], k=3), strict=True):
        assert hits[0].id == row["id"] and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[0].payload == {"answer": row["answer"]}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_scores_are_cosine_similarities_of_the_models_embeddings(run, tmp_path):
    index = Index.build(run, corpus(tmp_path), name="faq")
    model = Model.load(run, runtime="torch")
    vectors = model.embed([r["question"] for r in FAQ] + ["my package is late"])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    [hits] = index.search(["my package is late"], k=3)
    expected = {r["id"]: float(vectors[-1] @ vectors[i]) for i, r in enumerate(FAQ)}
    assert {h.id: h.score for h in hits} == pytest.approx(expected, abs=1e-5)
    # halfway between the 2nd and 3rd best: a threshold equal to a score would let float rounding decide
    third, second, _ = sorted(expected.values())
    [above] = index.search(["my package is late"], k=3, min_score=(second + third) / 2)
    assert [h.id for h in above] == [h.id for h in hits[:2]]


def test_a_query_vector_made_by_the_caller_searches_like_a_text(run, tmp_path):
    index = Index.build(run, corpus(tmp_path), name="faq")
    model = Model.load(run, runtime="torch")
    vector = model.embed(["my package is late"])
    assert index.search_vectors(3 * vector, k=3) == index.search(["my package is late"], k=3)  # scaled to unit
    mean = index.vectors[[0, 2]].mean(axis=0, keepdims=True)  # e.g. a user's taste: a mean of entry vectors
    [hits] = index.search_vectors(mean, k=2)
    assert {h.id for h in hits} == {"refund", "password"}
    assert index.search_vectors(np.zeros((0, index.vectors.shape[1])), k=1) == []
    with pytest.raises(InputError, match="expected shape"):
        index.search_vectors(np.ones((1, 3)), k=1)
    with pytest.raises(InputError, match="k: give 1 to"):
        index.search_vectors(mean, k=0)


def test_add_and_delete_keep_the_other_vectors_and_bump_the_version(run, tmp_path, monkeypatch):
    index = Index.build(run, corpus(tmp_path), name="faq")
    before = index.vectors.copy()
    index.add([Entry("hours", "when are you open", {"answer": "9 to 5"})])
    assert index.meta["version"] == 2 and index.meta["count"] == 4
    np.testing.assert_array_equal(index.vectors[:3], before)
    index.delete(["track"])
    reloaded = Index.load(index.directory)
    assert reloaded.meta["version"] == 3 and [e.id for e in reloaded.entries] == ["refund", "password", "hours"]
    np.testing.assert_array_equal(reloaded.vectors[:2], before[[0, 2]])
    with pytest.raises(InputError, match="already in index"):
        reloaded.add([Entry("refund", "again")])
    with pytest.raises(InputError, match="no entries with ids"):
        reloaded.delete(["nope"])


def test_an_index_refuses_another_model(run, tmp_path, tiny_run):
    index = Index.build(run, corpus(tmp_path), name="faq")
    other = shutil.copytree(tiny_run("classification"), tmp_path / "other")
    meta = json.loads((other / "goldmine.json").read_text())
    meta["extra"]["note"] = "retrained"
    (other / "goldmine.json").write_text(json.dumps(meta))
    with pytest.raises(IndexUnusable, match="built with another model"):
        index.check_model(other)
    model = Model.load(other, runtime="torch")
    model.directory = other
    with pytest.raises(IndexUnusable, match="built with another model"):
        index.search(["where is my parcel"], model=model)


def test_the_faiss_backend_answers_as_exact_search_does(run, tmp_path, monkeypatch):
    monkeypatch.setattr(index_module, "FAISS_FROM", 50)
    rng = np.random.default_rng(0)
    words = ["refund", "parcel", "password", "order", "card", "money", "login", "late", "email", "address"]
    rows = [{"id": str(i), "question": " ".join(rng.choice(words, 4))} for i in range(120)]
    exact = Index.build(run, corpus(tmp_path, rows, "a.jsonl"), name="exact", out=tmp_path / "exact")
    monkeypatch.setattr(index_module, "FAISS_FROM", 10)
    approximate = Index.build(run, corpus(tmp_path, rows, "b.jsonl"), name="ivf", out=tmp_path / "ivf")
    assert approximate.meta["backend"] == "faiss" and (tmp_path / "ivf" / "faiss.index").is_file()
    queries = ["my refund is late", "reset my login"]
    for a, b in zip(Index.load(tmp_path / "ivf").search(queries, k=1), exact.search(queries, k=1), strict=True):
        assert a[0].score == pytest.approx(b[0].score, abs=1e-5)


def test_bad_corpora_are_reported_by_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "question": "ok"}\n{"id": "a", "question": "again"}\n{"question": ""}\n{oops\n')
    with pytest.raises(DataError) as err:
        read_corpus(path)
    assert [(i.line, i.reason.split(" (")[0]) for i in err.value.issues] == [
        (2, "id 'a' already used on line 1"), (3, "no text in field 'question'"),
        (4, "invalid JSON: Expecting property name enclosed in double quotes")]
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="the corpus is empty"):
        read_corpus(tmp_path / "empty.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"question": "ok"}\n{"question": "caf\xe9"}\n')
    with pytest.raises(DataError) as err:
        read_corpus(tmp_path / "latin1.jsonl")
    assert [(i.line, i.reason) for i in err.value.issues] == [(2, "undecodable bytes (not UTF-8)")]


def test_bad_queries_are_refused(run, tmp_path):
    index = Index.build(run, corpus(tmp_path), name="faq")
    for queries, k, message in (([" "], 3, "query 0 is empty"), (["x" * 20_000], 3, "characters"),
                                (["ok"], 0, "k: give 1 to")):
        with pytest.raises(InputError, match=message):
            index.search(queries, k=k)


def test_the_cli_builds_updates_and_searches(run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["index", "build", str(run), str(corpus(tmp_path)), "--name", "faq"])
    assert result.exit_code == 0, result.output
    more = corpus(tmp_path, [{"id": "hours", "question": "when are you open"}], "more.jsonl")
    assert runner.invoke(app, ["index", "add", str(run / "indexes" / "faq"), str(more)]).exit_code == 0
    result = runner.invoke(app, ["search", str(run / "indexes" / "faq"), "-q", "where is my parcel", "-k", "2"])
    assert result.exit_code == 0, result.output
    [line] = [json.loads(x) for x in result.output.splitlines() if x.startswith("{")]
    assert line["hits"][0]["id"] == "track" and len(line["hits"]) == 2
    bad = runner.invoke(app, ["index", "build", str(run), str(tmp_path / "missing.jsonl"), "--name", "x"])
    assert bad.exit_code != 0 and "file not found" in bad.output


def test_a_cross_encoder_reorders_the_candidates(run, tmp_path, tiny_run):
    index = Index.build(run, corpus(tmp_path), name="faq")
    reranker = Model.load(tiny_run("pair"), runtime="torch")
    [hits] = index.search_and_rerank(["where is my parcel"], reranker, k=2, candidates=3)
    assert len(hits) == 2
    expected = {r["id"]: reranker.predict(["where is my parcel"], [r["question"]])[0]["scores"]["same"] for r in FAQ}
    assert [h.id for h in hits] == sorted(expected, key=lambda i: -expected[i])[:2]
    assert [h.rerank_score for h in hits] == pytest.approx([expected[h.id] for h in hits], abs=1e-5)
    with pytest.raises(InputError, match="trained on text pairs"):
        index.search_and_rerank(["x"], Model.load(run, runtime="torch"))
    with pytest.raises(InputError, match="match_label 'nope'"):
        index.search_and_rerank(["x"], reranker, match_label="nope")
