"""Loading a run directory written by `goldmine.train` and predicting through `Model`."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

from goldmine.errors import InputError, ModelError
from goldmine.inference.model import META_FILE, Model, RunMeta
from goldmine.modeling.pooled_classifier import PooledEncoderForSequenceClassification
from goldmine.tasks.sequence_classification import SequenceClassification
from goldmine.tasks.token_classification import TokenClassification

INTENTS = ["cancel_order", "card_lost", "change_address", "delivery_delay_complaint", "payment_failed",
           "refund_request", "reset_password", "talk_to_human", "track_order", "update_email"]
NER_LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER", "B-PRODUCT", "I-PRODUCT"]
TEXTS = [
    "where is my order?",
    "Hi, I ordered a coffee machine last Friday and it still has not arrived in Berlin, the tracking page says "
    "nothing, the courier keeps postponing and I want to cancel the order and get my money back. "
    "Please help, this is the third time I write to you about order GM-12345 and nobody answers.",
    "refund",
    "I lost my card in Tokyo, please block it",
    "Can I speak to a real person about my password? It keeps saying wrong password.",
    "hello there",
]


@pytest.fixture(scope="module")
def classification_run(tiny_run):
    return tiny_run("classification")


@pytest.fixture(scope="module")
def ner_run(tiny_run):
    return tiny_run("ner")


def test_run_directory_records_what_loading_needs(classification_run, tiny_model_dir):
    meta = RunMeta.load(classification_run)
    assert meta.task == "classification"
    assert meta.label_names == INTENTS
    assert meta.base_model == str(tiny_model_dir)
    assert (meta.strategy, meta.pooling, meta.max_length, meta.adapter) == ("full", "mean", 128, False)
    assert json.loads((classification_run / "labels.json").read_text())["label2id"]["track_order"] == 8

    model = Model.load(classification_run)
    assert isinstance(model.task, SequenceClassification)
    assert isinstance(model.network, PooledEncoderForSequenceClassification)
    assert model.network.training is False
    assert model.labels == INTENTS


def test_load_rejects_a_directory_without_metadata(tmp_path):
    with pytest.raises(ModelError, match=f"not a goldmine model directory \\(no {META_FILE}\\)"):
        Model.load(tmp_path)


def test_classification_predict_label_score_and_scores(classification_run):
    results = Model.load(classification_run).predict(TEXTS)
    assert len(results) == len(TEXTS)
    for result in results:
        assert set(result) == {"label", "score", "scores"}
        assert list(result["scores"]) == INTENTS
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        best = max(result["scores"], key=result["scores"].get)
        assert result["label"] == best
        assert result["score"] == pytest.approx(result["scores"][best], abs=1e-6)
        assert 0.0 < result["score"] <= 1.0


def test_length_sorted_batches_restore_input_order(classification_run):
    model = Model.load(classification_run, batch_size=2)  # TEXTS are not in length order: batches get reordered
    batched = model.predict(TEXTS)
    one_by_one = [model.predict([text])[0] for text in TEXTS]
    assert len({tuple(r["scores"].values()) for r in one_by_one}) == len(TEXTS)  # every text scores differently
    for got, expected in zip(batched, one_by_one, strict=True):
        assert got["label"] == expected["label"]
        assert got["scores"] == pytest.approx(expected["scores"], abs=1e-5)


def test_pair_model_reads_both_texts(tiny_run):
    run = tiny_run("pair")
    assert RunMeta.load(run).pair is True
    model = Model.load(run)
    first = model.predict(["where is my order", "where is my order"], ["where is my order", "cancel my card"])
    assert [list(p["scores"]) for p in first] == [["different", "same"]] * 2
    assert first[0]["scores"] != first[1]["scores"]  # the second text reaches the network
    with pytest.raises(InputError, match="trained on text pairs"):
        model.predict(["where is my order"])
    with pytest.raises(InputError, match="one per text"):
        model.predict(["where is my order", "hi"], ["cancel my card"])


def test_single_text_model_refuses_pairs(classification_run):
    assert RunMeta.load(classification_run).pair is False
    with pytest.raises(InputError, match="reads single texts"):
        Model.load(classification_run).predict(["where is my order"], ["where is my order"])


NER_TEXTS = [
    "Hi, my name is Anna Schmidt from Berlin.",
    "Zoë   Kowalski bought a PlayStation 5 at Acme Electronics in São Paulo!",
    "ok",
    "",
    "DHL says the package is stuck at their depot in Rotterdam since Tuesday, can Ravi Patel check order 12345?",
]


def word_spans(model: Model, text: str) -> list[tuple[int, int]]:
    pre_tokenizer = model.task.tokenizer.backend_tokenizer.pre_tokenizer
    return [span for _, span in pre_tokenizer.pre_tokenize_str(text)]


def test_ner_predict_entities_with_offsets_into_the_original_text(ner_run):
    model = Model.load(ner_run, batch_size=2)
    assert isinstance(model.task, TokenClassification)
    assert model.labels == NER_LABELS
    results = model.predict(NER_TEXTS)
    assert len(results) == len(NER_TEXTS)
    assert results[3] == {"entities": []}
    found = 0
    for text, result in zip(NER_TEXTS, results, strict=True):
        spans = word_spans(model, text)
        starts, ends = {s for s, _ in spans}, {e for _, e in spans}
        for entity in result["entities"]:
            assert set(entity) == {"type", "text", "start", "end", "score"}
            assert entity["text"] == text[entity["start"] : entity["end"]]
            assert entity["start"] in starts and entity["end"] in ends  # whole words, never part of one
            assert entity["type"] in {"LOC", "ORG", "PER", "PRODUCT"}
            assert 0.0 < entity["score"] <= 1.0
            found += 1
    assert found > 0  # a 2-step model tags plenty of words; the checks above must have run
    one_by_one = [model.predict([text])[0] for text in NER_TEXTS]
    assert one_by_one == [
        {"entities": [{**e, "score": pytest.approx(e["score"], abs=1e-5)} for e in r["entities"]]} for r in results
    ]


# A hand-wired NER model whose head always prefers one tag: the expected entities are known exactly,
# and words split into several word pieces show that an entity spans all of a word's pieces.

PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "anna", "lives", "in", "ham", "##burg", "un", "##believ",
          "##able", ",", "."]


def constant_tagger(tag: str) -> Model:
    tokenizer = BertTokenizerFast(vocab={piece: i for i, piece in enumerate(PIECES)})
    assert tokenizer.tokenize("Hamburg") == ["ham", "##burg"]
    config = BertConfig(vocab_size=len(PIECES), hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=8, num_labels=len(NER_LABELS))
    network = BertForTokenClassification(config)
    with torch.no_grad():
        network.classifier.weight.zero_()
        network.classifier.bias.fill_(0.0)
        network.classifier.bias[NER_LABELS.index(tag)] = 10.0
    task = TokenClassification(NER_LABELS, tokenizer, 32)
    return Model(network, task, RunMeta("ner", NER_LABELS, "hand-wired", max_length=32), batch_size=2)


def test_entities_cover_every_word_piece():
    model = constant_tagger("B-LOC")
    text = "Anna  lives in Hamburg, unbelievable."
    (result,) = model.predict([text])
    score = torch.tensor([10.0] + [0.0] * 8).softmax(-1)[0].item()
    words = [("Anna", 0), ("lives", 6), ("in", 12), ("Hamburg", 15), (",", 22), ("unbelievable", 24), (".", 36)]
    assert result["entities"] == [
        {"type": "LOC", "text": word, "start": start, "end": start + len(word), "score": pytest.approx(score)}
        for word, start in words
    ]


def test_stray_inside_tags_make_one_entity_over_the_whole_text():
    model = constant_tagger("I-PER")
    texts = ["Anna lives in Hamburg", "un Hamburg ."]
    assert [[(e["type"], e["text"], e["start"], e["end"]) for e in r["entities"]] for r in model.predict(texts)] == [
        [("PER", "Anna lives in Hamburg", 0, 21)],
        [("PER", "un Hamburg .", 0, 12)],
    ]


def test_a_document_is_tagged_sentence_by_sentence_with_offsets_into_it():
    # An I-PER tagger makes one entity of all it reads at once: each sentence is one entity, the text is not.
    model = constant_tagger("I-PER")
    text = "Anna lives in Hamburg. Bob lives in Berlin!\n\n  Hamburg ,unbelievable  "
    (result,) = model.predict([text])
    expected = ["Anna lives in Hamburg.", "Bob lives in Berlin!", "Hamburg ,unbelievable"]
    assert [e["text"] for e in result["entities"]] == expected
    assert [text[e["start"]:e["end"]] for e in result["entities"]] == expected
    assert [e["start"] for e in result["entities"]] == [0, 23, 47]


def test_a_long_text_is_tagged_to_its_last_word():
    """A sentence longer than max_length (32 here) is cut into pieces, not truncated: every word is tagged."""
    model = constant_tagger("B-LOC")
    text = "Anna lives in Hamburg " * 20  # one sentence of 80 words, 100 word pieces
    (result,), count = model.predict([text]), model.predict_counted([text])[0][1]
    assert [(e["start"], e["end"]) for e in result["entities"]] == [
        (m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    assert result["entities"][-1]["end"] == len(text) - 1
    assert count > 100 + 2  # every piece is read, each with its special tokens (and context where room is left)


@pytest.mark.parametrize("kind", ["classification", "pair"])
def test_predict_counted_counts_the_tokens_the_network_read(tiny_run, kind):
    """What the server bills: predict's own results, each with the length of its truncated encoding."""
    model = Model.load(tiny_run(kind), batch_size=2)
    texts = ["where is my order", "Anna Schmidt from Berlin " * 40, "hi"]  # the long one is truncated
    texts_b = ["my parcel is late", "cancel my card", "refund please"] if kind == "pair" else None
    counted = model.predict_counted(texts, texts_b)
    expected = model.task.tokenizer(texts, texts_b, truncation=True, max_length=model.meta.max_length)["input_ids"]
    assert [n for _, n in counted] == [len(ids) for ids in expected]
    assert counted[1][1] == model.meta.max_length
    assert [p for p, _ in counted] == model.predict(texts, texts_b)


def test_ner_predict_counted_counts_every_input_of_a_document(tiny_run):
    """A text of one sentence counts its own encoding, as before; a document counts each of its sentences'
    inputs, special tokens and neighbouring sentences read as context included; nothing is truncated."""
    model = Model.load(tiny_run("ner"), batch_size=2)
    texts = ["where is my order", "Anna Schmidt from Berlin " * 40, "hi", "Anna is here. Bob is in Berlin.", ""]
    counted = model.predict_counted(texts)
    single = model.task.tokenizer(texts[0::2][:2])["input_ids"]
    assert [counted[0][1], counted[2][1]] == [len(ids) for ids in single]
    for i in (1, 3):
        inputs = model.task.encode_texts([texts[i]]).features
        assert counted[i][1] == sum(len(f["input_ids"]) for f in inputs)
    assert counted[1][1] > model.meta.max_length  # the long sentence is read whole, in pieces
    assert counted[4] == ({"entities": []}, 0)  # no words: nothing run, nothing billed
    assert [p for p, _ in counted] == model.predict(texts)
