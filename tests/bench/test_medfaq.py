"""bench/medfaq.py's rules: planted PII sits at the spans it records, the scoring of recall and precision, and the
topic groups and paraphrases the hand-off figures rest on. The benchmark itself trains for an hour."""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_medfaq", ROOT / "bench" / "medfaq.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_planted_items_sit_at_their_spans(bench):
    questions = [f"What causes disease number {i} ?" for i in range(200)]
    rows = bench.pii_set(questions, seed=3)
    assert rows == bench.pii_set(questions, seed=3)  # reproducible
    clean = [r for r in rows if not r["items"]]
    assert 0.1 < len(clean) / len(rows) < 0.3
    for row, question in zip(rows, questions, strict=True):
        assert question in row["text"]
        for start, end, kind in row["items"]:
            value = row["text"][start:end]
            assert kind in {"name", "date", "phone", "email", "address", "mrn", "id"}
            assert value.strip() == value and value and question not in value
            if kind == "email":
                assert re.fullmatch(r"[a-z0-9.]+@[a-z.]+", value)


def test_scoring_counts_items_and_spans(bench):
    text = "Ana Lopez, call 555-123-4567 about type 2 diabetes"
    rows = [{"text": text, "items": [(0, 9, "name"), (16, 28, "phone")]}, {"text": "clean text", "items": []}]
    spans = [[(0, 3, "name"), (16, 28, "id"), (36, 42, "date")], [(0, 5, "name")]]  # half a name; a wrong kind
    score = bench.score_masking(rows, spans)
    assert score["recall"] == 0.5 and score["typed_recall"] == 0.0
    assert score["precision"] == 0.5 and score["false_spans"] == 2 and score["masked_spans"] == 4
    assert score["clean_questions"] == 1 and score["clean_questions_masked"] == 1
    assert score["recall_by_kind"] == {"name": 0.0, "phone": 1.0}


def test_topics_group_spellings_and_paraphrases_keep_the_focus(bench):
    assert bench.topic("Parkinson's Disease") == bench.topic("parkinson disease") == "parkinson disease"
    row = {"qtype": "symptoms", "focus": "Adult Acute Lymphoblastic Leukemia"}
    asked = bench.paraphrase(row, random.Random(0))
    assert "adult acute lymphoblastic leukemia" in asked and asked != "What are the symptoms of " + row["focus"]
    assert set(bench.PARAPHRASES) >= {"information", "symptoms", "treatment", "inheritance", "causes"}


def test_measure_reads_the_threshold_both_ways(bench):
    rows = [{"score": 0.9, "right": True, "right_topic": True, "present": True},
            {"score": 0.8, "right": False, "right_topic": True, "present": True},
            {"score": 0.3, "right": True, "right_topic": True, "present": True},
            {"score": 0.7, "right": False, "right_topic": False, "present": False},
            {"score": 0.2, "right": False, "right_topic": False, "present": False}]
    m = bench.measure(rows, 0.5)
    assert m["handoff_rate_removed_topics"] == 0.5 and m["answer_rate_present_topics"] == pytest.approx(2 / 3)
    assert m["answer_accuracy_present_topics"] == 0.5 and m["answer_topic_accuracy_present_topics"] == 1.0
    assert m["decided_right"] == pytest.approx(2 / 5)
