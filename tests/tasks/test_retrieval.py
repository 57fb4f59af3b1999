"""Retrieval (`task: retrieval`): a bi-encoder fine-tuned on matching pairs with in-batch and hard negatives; its run
directory embeds texts, scores pairs, feeds search indexes and is evaluated as a search (MRR@10, recall@k)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import goldmine
from goldmine.cli import app
from goldmine.config import load_config
from goldmine.data.readers import read_file
from goldmine.errors import ConfigError, DataError
from goldmine.inference.model import Model
from goldmine.modeling.sentence_embeddings import unit
from goldmine.retrieval.index import Index
from goldmine.tasks.retrieval import (
    SearchProblem,
    match_threshold,
    positive_label,
    ranking_metrics,
)
from goldmine.training.retrieval import sentence_encoder, training_rows


def test_ranking_metrics_count_the_rank_of_the_first_relevant_entry():
    corpus = np.eye(4, dtype=np.float32)
    queries = unit(np.array([[1, 0.5, 0, 0],     # entry 0 first, entry 1 second
                                     [0.9, 1, 0, 0],     # entry 1 first
                                     [1, 0, 0.5, 0]], dtype=np.float32))  # entry 0 first, entry 2 second
    metrics = ranking_metrics(queries, corpus, [{0}, {0}, {2, 3}])
    assert metrics["mrr10"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    assert metrics["recall1"] == pytest.approx(1 / 3)
    # query 3 finds entry 2 at rank 2 and entry 3 at rank 3 or 4: half its relevant entries by rank 2, all by 5
    assert metrics["recall5"] == pytest.approx(1.0)


def test_match_threshold_separates_matches_from_near_misses():
    similarities = np.array([0.1, 0.2, 0.35, 0.6, 0.7, 0.9])
    matches = np.array([False, False, False, True, True, True])
    assert 0.35 < match_threshold(similarities, matches) < 0.6
    assert match_threshold(np.array([0.5, 0.6]), np.array([True, True])) <= 0.5  # all matches: all above


def test_positive_label_is_configured_the_only_one_or_the_one_that_reads_as_a_match():
    assert positive_label(["0", "1"], None, "f") == "1"
    assert positive_label(["different", "same"], None, "f") == "same"
    assert positive_label(["pair"], None, "f") == "pair"
    assert positive_label(["a", "b"], "b", "f") == "b"
    with pytest.raises(ConfigError, match="which of f's labels"):
        positive_label(["apple", "pear"], None, "f")
    with pytest.raises(ConfigError, match="not a label"):
        positive_label(["0", "1"], "yes", "f")


def pairs_file(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"text": a, "text_b": b, "label": y}) + "\n" for a, b, y in rows))
    return path


def test_search_problem_reads_pairs_as_queries_over_every_second_text(tmp_path):
    data = read_file(pairs_file(tmp_path, [("q1", "a1", "1"), ("q1", "x", "0"), ("q2", "a2", "1"), ("q3", "a1", "0")]))
    problem = SearchProblem.from_pairs(data, "1")
    assert problem.queries == ["q1", "q2"] and problem.corpus == ["a1", "x", "a2"]
    assert problem.relevant == [{0}, {2}]  # q3 has no match: not a query, but its text stays in the corpus


def test_each_match_gets_its_labeled_near_miss_else_a_mined_one(tmp_path, tiny_model_dir):
    data = read_file(pairs_file(tmp_path, [("where is my card", "my card has not arrived", "1"),
                                           ("where is my card", "i lost my card", "0"),
                                           ("change my pin", "how do i set a new pin", "1"),
                                           ("top up failed", "my top up did not work", "1"),
                                           ("top up failed", "a refund is missing", "0")]))
    columns, record = training_rows(data, "1", sentence_encoder(str(tiny_model_dir), 32), seed=0)
    assert columns["anchor"] == ["where is my card", "change my pin", "top up failed"]
    assert columns["negative"][0] == "i lost my card" and columns["negative"][2] == "a refund is missing"
    assert columns["negative"][1] != "how do i set a new pin"  # never its own match
    assert record["labeled"] == 2 and record["mined"] + record["random"] == 1 and record["matches"] == 3
    columns, record = training_rows(data, "1", None, seed=0)  # mining off: a random stand-in, counted
    assert record["mined"] == 0 and record["random"] == 1 and len(columns["negative"]) == 3
    only_matches = read_file(pairs_file(tmp_path, [("a", "b", "1"), ("c", "d", "1")]))
    columns, record = training_rows(only_matches, "1", None, seed=0)
    assert "negative" not in columns and record["negatives"] == "in-batch only"


@pytest.fixture(scope="module")
def retrieval_run(tmp_path_factory, demo_pairs, tiny_model_dir):
    out = tmp_path_factory.mktemp("retrieval") / "run"
    result = goldmine.train(None, **{"task": "retrieval", "data.train": demo_pairs, "model.name": str(tiny_model_dir),
                                     "output_dir": out, "training.max_steps": 4, "training.batch_size": 8,
                                     "training.eval_strategy": "steps", "training.eval_steps": 2})
    return out, result


def test_a_run_directory_records_the_match_threshold_and_before_vs_after(retrieval_run):
    out, result = retrieval_run
    meta = json.loads((out / "goldmine.json").read_text())
    assert meta["task"] == "retrieval" and meta["pair"] is False
    settings = meta["extra"]["retrieval"]
    assert settings["positive_label"] == "same" and isinstance(settings["match_threshold"], float)
    assert settings["hard_negatives"]["matches"] > 0
    assert list(result.before_after) == ["pretrained encoder", "fine-tuned"]
    for row in result.before_after.values():
        assert set(row) == {"mrr10", "recall1", "recall5", "pair_accuracy"}
        assert 0 <= row["mrr10"] <= 1
    assert result.global_step == 4 and (out / "before_after.md").is_file()


def test_predict_scores_pairs_and_embeds_single_texts(retrieval_run):
    out, _ = retrieval_run
    model = Model.load(out)
    threshold = model.meta.extra["retrieval"]["match_threshold"]
    [pair] = model.predict(["where is my parcel"], ["my parcel has not arrived"])
    vectors = unit(model.embed(["where is my parcel", "my parcel has not arrived"]))
    assert pair["similarity"] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)
    assert pair["match"] == (pair["similarity"] >= threshold)
    [single] = model.predict(["where is my parcel"])
    assert np.asarray(single["embedding"]) == pytest.approx(vectors[0], abs=1e-5)


def test_eval_measures_the_search_through_the_saved_model(retrieval_run, demo_pairs, tmp_path):
    out, _ = retrieval_run
    pairs = demo_pairs
    metrics = goldmine.evaluate(out, pairs)
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(out), str(pairs), "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "mrr10" in result.output and "queries over" in result.output
    written = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    problem = SearchProblem.from_pairs(read_file(pairs), "same")
    model = Model.load(out)
    expected = ranking_metrics(unit(model.embed(problem.queries)), unit(model.embed(problem.corpus)),
                               problem.relevant)
    assert written["mrr10"] == pytest.approx(expected["mrr10"]) and written["queries"] == len(problem.queries)
    assert metrics["mrr10"] == pytest.approx(expected["mrr10"])


def test_an_index_is_built_from_a_retrieval_model(retrieval_run, tmp_path):
    out, _ = retrieval_run
    entries = [{"id": "a", "question": "how do i reset my password"}, {"id": "b", "question": "where is my parcel"}]
    corpus = tmp_path / "faq.jsonl"
    corpus.write_text("".join(json.dumps(e) + "\n" for e in entries))
    index = Index.build(out, corpus, name="faq", out=tmp_path / "index")
    [hits] = index.search(["where is my parcel"], k=1)
    assert hits[0].id == "b" and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_a_pretrained_encoder_saved_untrained_embeds_as_sentence_transformers_does(tmp_path, tiny_model_dir):
    from goldmine.training.retrieval import encoder_embed, save_pretrained_encoder

    out = tmp_path / "pretrained"
    meta = save_pretrained_encoder(load_config(None, {"task": "retrieval", "output_dir": out,
                                                      "model.name": str(tiny_model_dir), "model.max_length": 32}))
    assert meta.task == "retrieval" and meta.extra["pretrained"] and meta.extra["global_step"] == 0
    texts = ["where is my parcel", "i lost my card"]
    expected = encoder_embed(sentence_encoder(str(tiny_model_dir), 32))(texts)
    assert unit(Model.load(out).embed(texts)) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ConfigError, match="saved as task retrieval"):
        save_pretrained_encoder(load_config(None, {"output_dir": out, "model.name": str(tiny_model_dir)}))


def test_bad_retrieval_input_gets_a_clear_error(tmp_path, demo_files, tiny_model_dir):
    base = {"task": "retrieval", "model.name": str(tiny_model_dir), "output_dir": str(tmp_path / "r"),
            "training.max_steps": 1}
    with pytest.raises(ConfigError, match="strategy full"):
        load_config(None, {**base, "tuning.strategy": "lora"})
    with pytest.raises(DataError, match="needs pair data"):
        goldmine.train(None, **{**base, "data.train": demo_files.intents})
    ambiguous = pairs_file(tmp_path, [("a", "b", "apple"), ("c", "d", "pear")] * 10)
    with pytest.raises(ConfigError, match="positive_label"):
        goldmine.train(None, **{**base, "data.train": ambiguous})
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_export_gates_on_the_search_metric_and_embeddings(retrieval_run, tmp_path):
    import shutil

    run = shutil.copytree(retrieval_run[0], tmp_path / "run")
    result = goldmine.export(run)
    report = result.report
    assert report["metric"] == "mrr10" and report["runtimes"]["onnx"]["passed"]
    assert report["runtimes"]["onnx"]["max_abs_logit_diff"] < 1e-4  # here: embedding components
    assert report["runtimes"]["onnx"]["label_agreement"] == 1.0
    onnx = Model.load(run, runtime="onnx")
    torch_model = Model.load(run, runtime="torch")
    assert onnx.embed(["where is my parcel"]) == pytest.approx(torch_model.embed(["where is my parcel"]), abs=1e-4)
