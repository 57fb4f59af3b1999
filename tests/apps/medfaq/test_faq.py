"""MedFaq on a tiny random encoder: urgent rules first, a confident answer vs a hand-off, no clear PII anywhere,
bad input, settings and the FAQ file. (The app config, registry, CLI and HTTP: test_app.py.)

A random encoder ranks nothing meaningfully, but a question identical to a FAQ question has cosine 1: with a
threshold of 0.999 the FAQ answers exactly its own questions and hands everything else off, so each assertion is
exact."""

from __future__ import annotations

import json
import logging

import pytest

from goldmine.apps.medfaq import MedFaq, MedFaqSettings, PiiKind, build_index, calibrate_threshold, read_faq
from goldmine.apps.medfaq.config import DISCLAIMER, HANDOFF_MESSAGE
from goldmine.errors import ConfigError, DataError, InputError
from goldmine.retrieval.index import Index, IndexUnusable

EXACT = 0.999


@pytest.fixture(scope="module")
def retriever(tiny_encoder):
    from goldmine.inference.model import Model

    model = Model.load(tiny_encoder)
    return model


def make_faq(tiny_encoder, faq_index_dir, retriever, ner=None, **settings) -> MedFaq:
    return MedFaq(MedFaqSettings(**{"threshold": EXACT, **settings}), retriever, Index.load(faq_index_dir), ner=ner,
                  retriever_dir=tiny_encoder)


@pytest.fixture(scope="module")
def faq(tiny_encoder, faq_index_dir, retriever):
    return make_faq(tiny_encoder, faq_index_dir, retriever)


def test_a_faq_question_is_answered_with_its_source_and_the_disclaimer(faq):
    reply = faq.answer("how do i treat a sprained ankle")
    assert reply.handoff is None
    assert (reply.answer, reply.url, reply.entry_id) == ("Rest, ice, compression, elevation.",
                                                         "https://faq.example.org/sprain", "sprain")
    assert reply.disclaimer == DISCLAIMER and reply.threshold == EXACT and reply.score >= EXACT
    assert reply.matches[0].id == "sprain" and reply.matches[0].focus == "ankle sprain" and len(reply.matches) == 3
    assert faq.answer("how can i get my medical records").url is None  # an entry without a url


def test_a_question_far_from_the_faq_is_handed_off(faq):
    reply = faq.answer("how do i treat a sprained wrist")
    assert reply.handoff is not None and reply.handoff.reason == "low_confidence"
    assert reply.handoff.message == HANDOFF_MESSAGE and reply.handoff.rule is None
    assert reply.answer is None and reply.url is None and reply.entry_id is None
    assert reply.score < EXACT and len(reply.matches) == 3 and reply.disclaimer == DISCLAIMER


def test_urgent_rules_come_before_any_search(tiny_encoder, faq_index_dir, retriever):
    faq = make_faq(tiny_encoder, faq_index_dir, retriever)

    def no_search(*args, **kwargs):
        raise AssertionError("an urgent question must not reach the search")

    faq.index.search = no_search
    reply = faq.answer("how do i treat a sprained ankle? also I have crushing chest pain, my MRN is 00482913")
    assert reply.handoff.reason == "urgent" and reply.handoff.rule == "chest_pain"
    assert "emergency" in reply.handoff.message
    assert reply.answer is None and reply.matches == [] and reply.score is None and reply.threshold is None
    assert "00482913" not in reply.masked_question and reply.masked_kinds == [PiiKind.MRN]


def test_personal_data_is_masked_before_the_search(faq):
    reply = faq.answer("how do i treat a sprained ankle? call 555-123-4567")
    assert reply.masked_question == "how do i treat a sprained ankle? call <PHONE>"
    assert reply.masked_kinds == [PiiKind.PHONE]


def test_nothing_in_clear_reaches_logs_or_the_reply(tiny_encoder, faq_index_dir, retriever, stub_ner, caplog):
    secrets = ["Dana Whitfield", "Whitfield", "04/12/1979", "00482913", "555-123-4567", "dana.w@example.com",
               "42 Oak Street", "XGH123456789", "Springfield"]
    ner = stub_ner([("PER", "Dana Whitfield"), ("LOC", "Springfield")])
    faq = make_faq(tiny_encoder, faq_index_dir, retriever, ner=ner)
    questions = [
        "I'm Dana Whitfield (DOB 04/12/1979, MRN 00482913) from Springfield: when should i get the flu shot",
        "call 555-123-4567 or dana.w@example.com, I live at 42 Oak Street, member ID XGH123456789",
        "Dana Whitfield here, I took too many pills",  # the urgent path
    ]
    caplog.set_level(logging.DEBUG)
    replies = [faq.answer(q) for q in questions] + faq.answer_many(questions)
    with pytest.raises(InputError) as refused:  # an error message holds no text either
        faq.answer("Dana Whitfield, MRN 00482913 " * 200)
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert caplog.records, "the replies were logged"
    for secret in secrets:
        assert secret not in logged
        assert secret not in str(refused.value)
        for reply in replies:
            assert secret not in reply.model_dump_json()
    assert replies[0].masked_kinds == [PiiKind.ADDRESS, PiiKind.DATE, PiiKind.MRN, PiiKind.NAME]
    assert replies[2].handoff.rule == "overdose_poisoning" and "<NAME>" in replies[2].masked_question


@pytest.mark.parametrize(("question", "error"), [
    ("", "question is empty"),
    ("   \n\t", "question is empty"),
    ("x" * 2001, "question has 2001 characters; the limit is 2000"),
    (None, "give the question as text, got NoneType"),
    (["a list"], "give the question as text, got list"),
])
def test_bad_questions_are_clear_errors(faq, question, error):
    with pytest.raises(InputError, match=error):
        faq.answer(question)


def test_a_bad_question_in_a_batch_is_named_and_nothing_is_answered(faq):
    with pytest.raises(InputError, match="question 1 is empty"):
        faq.answer_many(["how do i treat a sprained ankle", " "])


def test_a_question_made_only_of_personal_data_is_handed_off(faq):
    reply = faq.answer(" 555-123-4567 ")
    assert reply.masked_question == " <PHONE> " and reply.handoff.reason == "low_confidence"
    assert reply.score is None and reply.matches == []


def test_reranker_scores_decide_when_configured(tiny_encoder, faq_index_dir, retriever, tiny_run):
    from goldmine.inference.model import Model

    config = MedFaqSettings(rerank_threshold=0.0, top_k=2, rerank_candidates=4)
    faq = MedFaq(config, retriever, Index.load(faq_index_dir), reranker=Model.load(tiny_run("pair")))
    reply = faq.answer("how do i treat a sprained ankle")
    assert reply.threshold == 0.0 and reply.handoff is None and len(reply.matches) == 2
    assert reply.score == reply.matches[0].rerank_score
    assert reply.matches[0].rerank_score >= reply.matches[1].rerank_score
    with pytest.raises(ConfigError, match="re-ranker is a pair classification run"):
        MedFaq(config, retriever, Index.load(faq_index_dir), reranker=Model.load(tiny_run("classification")))


def test_auto_threshold_needs_a_trained_retriever(tiny_encoder, faq_index_dir, retriever):
    with pytest.raises(ConfigError, match="threshold: auto needs a retriever trained with `task: retrieval`"):
        MedFaq(MedFaqSettings(), retriever, Index.load(faq_index_dir))


def test_an_index_of_another_model_is_refused(tmp_path, tiny_encoder, faq_file, retriever, tiny_model_dir):
    from goldmine.apps.medfaq.encoder import save_pretrained_encoder

    other = save_pretrained_encoder(tmp_path / "other", str(tiny_model_dir), 32)  # another max_length: digest
    index = build_index(other, faq_file)
    with pytest.raises(IndexUnusable, match="built with another model"):
        MedFaq(MedFaqSettings(threshold=0.5), retriever, index, retriever_dir=tiny_encoder)


def test_from_runs_loads_directories(tiny_encoder, faq_index_dir):
    reply = MedFaq.from_runs(MedFaqSettings(threshold=EXACT, top_k=1), tiny_encoder).answer(
        "is parkinson disease inherited")  # the index where build_index puts it by default
    assert reply.entry_id == "parkinson" and len(reply.matches) == 1


@pytest.mark.parametrize(("fields", "error"), [
    ({"threshold": 2}, "threshold: a cosine similarity lies in"),
    ({"top_k": 0}, "top_k\n.*greater than or equal to 1"),
    ({"ner_kinds": {"PER": "person"}}, "ner_kinds.PER\n.*Input should be 'name'"),
    ({"rerank": "x"}, "rerank\n.*Extra inputs are not permitted"),
])
def test_bad_settings_name_the_field(fields, error):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=error):
        MedFaqSettings(**fields)


def test_read_faq_reports_every_bad_line(tmp_path):
    path = tmp_path / "faq.jsonl"
    rows = [{"id": "a", "question": "q1", "answer": "a1"}, {"id": "b", "question": "q2"},
            {"id": "a", "question": "q3", "answer": "a3"}, {"id": "c", "question": " ", "answer": "a4"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    with pytest.raises(DataError) as err:
        read_faq(path)
    message = str(err.value)
    assert f"{path}:2: no text in field(s) answer" in message
    assert f"{path}:3: id 'a' already used on line 1" in message
    assert f"{path}:4: no text in field(s) question" in message and f"{path}:5:" in message


def test_read_faq_keeps_fields_as_the_payload(faq_file):
    entries = read_faq(faq_file)
    assert [e.id for e in entries] == ["flu", "fever", "parkinson", "sprain", "records"]
    assert entries[0].payload == {"answer": "Every autumn, before flu season.", "url": "https://faq.example.org/flu",
                                  "focus": "influenza vaccine"}


def test_calibrate_threshold_decides_most_questions_right():
    fit = calibrate_threshold([0.9, 0.8, 0.3, 0.2], [True, True, False, False])
    assert fit.threshold == pytest.approx(0.55) and fit.accuracy == 1.0 and fit.answerable == 2
    fit = calibrate_threshold([0.9, 0.7, 0.6, 0.2], [True, False, True, False])
    assert fit.threshold == pytest.approx(0.4) and fit.accuracy == 0.75
    with pytest.raises(InputError, match="one verdict per score"):
        calibrate_threshold([0.5], [])


def test_best_scores_feed_the_calibration(faq):
    best = faq.best_scores(["is parkinson disease inherited", "a question about nothing here"])
    assert best[0][1].id == "parkinson" and best[0][0] >= EXACT and best[1][0] < EXACT


def test_focus_words_spare_eponyms_from_the_ner(tiny_encoder, faq_index_dir, retriever, stub_ner):
    faq = make_faq(tiny_encoder, faq_index_dir, retriever, ner=stub_ner([("PER", "parkinson"), ("PER", "Ana")]))
    reply = faq.answer("is parkinson disease inherited? Ana")
    assert reply.masked_question == "is parkinson disease inherited? <NAME>"


def test_focus_words_take_every_word_of_the_topics():
    from types import SimpleNamespace

    from goldmine.apps.medfaq.faq import focus_words

    index = SimpleNamespace(entries=[SimpleNamespace(payload={"focus": "Al Gazali Sabrinathan Nair syndrome"}),
                                     SimpleNamespace(payload={"focus": "Parkinson's Disease"}),
                                     SimpleNamespace(payload={})])
    assert focus_words(index) == {"al", "gazali", "sabrinathan", "nair", "syndrome", "parkinson", "disease"}
