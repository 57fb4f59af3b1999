"""Token classification: sub-word alignment, document context, truncation, decoding, loss and dev metrics.

The tokenizer here is a word-piece BERT tokenizer over a hand-written vocabulary, so every split is
known in advance: "Hamburg" -> ham ##burg, "unbelievable" -> un ##believ ##able, every other word is
one piece.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertTokenizerFast

from goldmine.data.schema import DataKind, LabeledData, TokenExample
from goldmine.errors import DataError
from goldmine.tasks.token_classification import (
    IGNORE,
    LOWER,
    MIXED,
    TITLE,
    UPPER,
    Entity,
    TokenClassification,
    decode_entities,
    entity_counts,
    entity_spans,
    word_case,
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PIECES = ["anna", "lives", "in", "ham", "##burg", "un", "##believ", "##able", "berlin", "is", "big", ".",
          "paris", "bob", "works", "at", "acme", "new", "york"]
LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
OUT, B_LOC, I_LOC, B_PER = 0, 1, 2, 3

S0 = TokenExample(("Anna", "lives", "in", "Hamburg", "."), ("B-PER", "O", "O", "B-LOC", "O"), 0, "f.conll:2")
S1 = TokenExample(("Berlin", "is", "big", "."), ("B-LOC", "O", "O", "O"), 0, "f.conll:9")
S2 = TokenExample(("Bob", "works", "at", "Acme", "."), ("B-PER", "O", "O", "O", "O"), 0, "f.conll:15")
S3 = TokenExample(("Paris", "is", "big", "."), ("B-LOC", "O", "O", "O"), 1, "f.conll:23")  # another document


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizerFast(vocab={piece: i for i, piece in enumerate(SPECIALS + PIECES)})


def ids(tokenizer, *tokens: str) -> list[int]:
    return tokenizer.convert_tokens_to_ids(list(tokens))


def task_for(tokenizer, max_length: int = 64, document_context: bool = False) -> TokenClassification:
    return TokenClassification(LABELS, tokenizer, max_length, document_context=document_context)


def data(*examples: TokenExample) -> LabeledData:
    return LabeledData(DataKind.TOKENS, list(examples), "f.conll")


def test_label_names_and_default_document_context(tokenizer):
    assert data(S0, S1).label_names() == LABELS
    assert TokenClassification(LABELS, tokenizer).document_context is True
    assert task_for(tokenizer).document_context is False


def test_tokenizer_splits_as_the_tests_assume(tokenizer):
    assert tokenizer.tokenize("Hamburg unbelievable Anna") == ["ham", "##burg", "un", "##believ", "##able", "anna"]


def test_label_on_first_sub_token_only(tokenizer):
    sentence = TokenExample(("Bob", "is", "unbelievable", "in", "Hamburg"), ("B-PER", "O", "B-LOC", "O", "B-LOC"))
    encoded = task_for(tokenizer).encode(data(S0, sentence))

    first, second = encoded.features
    assert first["input_ids"] == ids(tokenizer, "[CLS]", "anna", "lives", "in", "ham", "##burg", ".", "[SEP]")
    assert first["labels"] == [IGNORE, B_PER, OUT, OUT, B_LOC, IGNORE, OUT, IGNORE]
    assert first["attention_mask"] == [1] * 8
    assert first["token_type_ids"] == [0] * 8
    assert second["input_ids"] == ids(
        tokenizer, "[CLS]", "bob", "is", "un", "##believ", "##able", "in", "ham", "##burg", "[SEP]"
    )
    assert second["labels"] == [IGNORE, B_PER, OUT, B_LOC, IGNORE, IGNORE, OUT, B_LOC, IGNORE, IGNORE]
    assert encoded.alignment == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
    assert encoded.truncated == 0


def test_document_context_adds_neighbours_of_the_same_document_only(tokenizer):
    encoded = task_for(tokenizer, document_context=True).encode(data(S0, S1, S2, S3))
    doc0 = ["anna", "lives", "in", "ham", "##burg", ".", "berlin", "is", "big", ".", "bob", "works", "at", "acme", "."]
    x = IGNORE

    # Every sentence of document 0 sees the whole document; S3 (document 1) sees only itself.
    for feature in encoded.features[:3]:
        assert feature["input_ids"] == ids(tokenizer, "[CLS]", *doc0, "[SEP]")
    assert encoded.features[3]["input_ids"] == ids(tokenizer, "[CLS]", "paris", "is", "big", ".", "[SEP]")
    assert ids(tokenizer, "paris")[0] not in sum((f["input_ids"] for f in encoded.features[:3]), [])

    # Only the sentence's own words carry labels; the context words are ignored.
    assert encoded.features[0]["labels"] == [x, B_PER, OUT, OUT, B_LOC, x, OUT] + [x] * 9 + [x]
    assert encoded.features[1]["labels"] == [x] + [x] * 6 + [B_LOC, OUT, OUT, OUT] + [x] * 5 + [x]
    assert encoded.features[2]["labels"] == [x] + [x] * 10 + [B_PER, OUT, OUT, OUT, OUT] + [x]
    assert encoded.features[3]["labels"] == [x, B_LOC, OUT, OUT, OUT, x]
    assert encoded.alignment == [[0, 1, 2, 3, 4], [0, 1, 2, 3], [0, 1, 2, 3, 4], [0, 1, 2, 3]]
    assert encoded.truncated == 0


def test_document_context_fills_the_budget_with_the_nearest_words(tokenizer):
    # max_length 12: 10 pieces of room, S1 takes 4, the left half (3) takes "Hamburg ." from S0 and the
    # right side gets the rest (3): "Bob works at".
    encoded = task_for(tokenizer, max_length=12, document_context=True).encode(data(S0, S1, S2))
    feature = encoded.features[1]
    assert feature["input_ids"] == ids(
        tokenizer, "[CLS]", "ham", "##burg", ".", "berlin", "is", "big", ".", "bob", "works", "at", "[SEP]"
    )
    assert feature["labels"] == [IGNORE, IGNORE, IGNORE, IGNORE, B_LOC, OUT, OUT, OUT, IGNORE, IGNORE, IGNORE, IGNORE]
    assert encoded.alignment[1] == [0, 1, 2, 3]
    assert all(len(f["input_ids"]) <= 12 for f in encoded.features)
    assert encoded.truncated == 0


def test_context_length_caps_the_fill_but_not_the_sentence_itself(tokenizer):
    # context_length 8 leaves 6 pieces: S1 takes 4, the other 2 go to the nearest words on each side.
    task = TokenClassification(LABELS, tokenizer, 12, document_context=True, context_length=8)
    encoded = task.encode(data(S0, S1, S2))
    assert encoded.features[1]["input_ids"] == ids(tokenizer, "[CLS]", ".", "berlin", "is", "big", ".", "bob", "[SEP]")
    # A sentence longer than the context length keeps all of max_length and gets no context.
    long = TokenExample(("Anna", "lives", "unbelievable", "in", "Hamburg"), ("B-PER", "O", "O", "O", "B-LOC"))
    task = TokenClassification(LABELS, tokenizer, 12, document_context=True, context_length=6)
    encoded = task.encode(data(long, S1))
    assert encoded.features[0]["input_ids"] == ids(
        tokenizer, "[CLS]", "anna", "lives", "un", "##believ", "##able", "in", "ham", "##burg", "[SEP]"
    )
    assert encoded.truncated == 0
    assert task.context_length == 6
    assert TokenClassification(LABELS, tokenizer, 12, context_length=64).context_length == 12  # never above max


@pytest.mark.parametrize("document_context", [False, True])
def test_truncation_counts_and_drops_words_beyond_max_length(tokenizer, document_context):
    long = TokenExample(("Anna", "lives", "unbelievable", "in", "Hamburg"), ("B-PER", "O", "O", "O", "B-LOC"))
    short = TokenExample(("Berlin", "is", "big"), ("B-LOC", "O", "O"))
    encoded = task_for(tokenizer, max_length=8, document_context=document_context).encode(data(long, short))

    first, second = encoded.features
    assert first["input_ids"] == ids(tokenizer, "[CLS]", "anna", "lives", "un", "##believ", "##able", "in", "[SEP]")
    assert first["labels"] == [IGNORE, B_PER, OUT, OUT, IGNORE, IGNORE, OUT, IGNORE]
    assert encoded.alignment[0] == [0, 1, 2, 3]  # "Hamburg" (word 4) did not fit
    # The last sentence of a document gives its unused right-hand room to the left-hand context.
    context = ["in", "ham", "##burg"] if document_context else []
    assert second["input_ids"] == ids(tokenizer, "[CLS]", *context, "berlin", "is", "big", "[SEP]")
    assert encoded.alignment[1] == [0, 1, 2]
    assert encoded.truncated == 1


def test_word_without_sub_tokens_is_not_counted_as_truncated(tokenizer):
    # A soft hyphen normalises to nothing: the word has no position, but nothing was cut off.
    sentence = TokenExample(("Anna", "\xad", "lives"), ("B-PER", "O", "O"))
    encoded = task_for(tokenizer).encode(data(sentence))
    assert encoded.features[0]["input_ids"] == ids(tokenizer, "[CLS]", "anna", "lives", "[SEP]")
    assert encoded.alignment == [[0, 2]]
    assert encoded.truncated == 0


def test_unknown_tag_raises_with_the_line_of_the_token(tokenizer):
    bad = TokenExample(("Anna", "lives", "in", "Hamburg"), ("B-PER", "O", "O", "B-CITY"), 0, "f.conll:30")
    with pytest.raises(DataError) as err:
        task_for(tokenizer).encode(data(S0, bad))
    assert [(issue.path, issue.line) for issue in err.value.issues] == [("f.conll", 33)]
    assert "f.conll:33" in str(err.value) and "B-CITY" in str(err.value)


def test_class_frequencies_count_tags(tokenizer):
    counts = task_for(tokenizer).class_frequencies(data(S0, S1, S2, S3))
    assert counts.tolist() == [13.0, 3.0, 0.0, 2.0, 0.0]


def test_loss_ignores_unlabeled_positions(tokenizer):
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0], [5.0, -5.0, 0.0, 0.0, 9.0]]])
    labels = torch.tensor([[OUT, B_LOC, IGNORE]])
    outputs = type("Outputs", (), {"logits": logits})()
    loss = task_for(tokenizer).loss_function(None, 0.0)(outputs, labels)
    expected = -(torch.log_softmax(logits[0, 0], -1)[OUT] + torch.log_softmax(logits[0, 1], -1)[B_LOC]) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)

    weights = torch.tensor([1.0, 3.0, 1.0, 1.0, 1.0])
    weighted = task_for(tokenizer).loss_function(weights, 0.0)(outputs, labels)
    nll = -torch.log_softmax(logits[0, :2], -1)[[0, 1], [OUT, B_LOC]]
    assert weighted.item() == pytest.approx(((nll[0] + 3 * nll[1]) / 4).item(), rel=1e-6)


def test_dev_metrics_score_first_sub_tokens_only(tokenizer):
    task = task_for(tokenizer)
    labels = np.array([[IGNORE, B_PER, IGNORE, OUT, B_LOC, IGNORE], [IGNORE, B_LOC, I_LOC, OUT, IGNORE, IGNORE]])
    # Wrong ids at ignored positions must not matter; sentence 2 gets the LOC span one word short.
    predictions = np.array([[B_LOC, B_PER, B_LOC, OUT, B_LOC, I_LOC], [OUT, B_LOC, OUT, OUT, B_PER, B_PER]])
    assert task.dev_metrics(predictions, labels) == {"f1": pytest.approx(2 / 3)}
    assert task.dev_metrics(np.where(labels == IGNORE, OUT, labels), labels) == {"f1": 1.0}
    assert task.reduce_logits(torch.tensor([[[0.0, 2.0], [3.0, 1.0]]])).tolist() == [[1, 0]]


def test_dev_metrics_count_a_stray_inside_tag_as_an_entity(tokenizer):
    """The trainer's dev F1 is the headline figure (conlleval's rules), not seqeval's strict one."""
    labels = np.array([[IGNORE, B_LOC, I_LOC, OUT, B_PER]])
    stray = np.array([[OUT, I_LOC, I_LOC, OUT, B_PER]])  # I-LOC I-LOC opens LOC over words 0-1: right
    assert task_for(tokenizer).dev_metrics(stray, labels) == {"f1": 1.0}  # strict mode would give 2/3


# ------------------------------------------------------------------------------------------------ decode_entities


def test_entity_spans_follow_conlleval_chunk_rules():
    tags = ["I-PER", "I-PER", "B-PER", "I-LOC", "O", "I-ORG", "B-ORG", "I-ORG"]
    assert entity_spans(tags) == [("PER", 0, 2), ("PER", 2, 3), ("LOC", 3, 4), ("ORG", 5, 6), ("ORG", 6, 8)]
    assert entity_spans([]) == entity_spans(["O"]) == []


def test_entity_counts_need_type_and_both_boundaries():
    truth = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG"]]
    guess = [["B-PER", "O", "O", "I-LOC"], ["B-LOC"]]
    # PER one word short (wrong), stray I-LOC is the LOC (right), ORG tagged as LOC (wrong)
    assert entity_counts(truth, guess) == {"LOC": (1, 2, 1), "ORG": (0, 0, 1), "PER": (0, 1, 1)}



def spans_of(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for word in text.split(" "):
        spans.append((start, start + len(word)))
        start += len(word) + 1
    return spans


def test_decode_b_i_sequences_with_character_offsets():
    text = "Anna Schmidt flew from New York City to Lyon"
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O", "B-LOC"]
    scores = [0.9, 0.7, 1.0, 1.0, 0.6, 0.9, 0.3, 1.0, 0.5]
    assert decode_entities(tags, scores, spans_of(text), text) == [
        Entity("PER", "Anna Schmidt", 0, 12, pytest.approx(0.8)),
        Entity("LOC", "New York City", 23, 36, pytest.approx(0.6)),
        Entity("LOC", "Lyon", 40, 44, 0.5),
    ]


def test_decode_stray_inside_tag_opens_an_entity():
    text = "ask DHL Express now"
    tags = ["O", "I-ORG", "I-ORG", "O"]
    assert decode_entities(tags, [1.0, 0.4, 0.8, 1.0], spans_of(text), text) == [
        Entity("ORG", "DHL Express", 4, 15, pytest.approx(0.6)),
    ]


def test_decode_adjacent_entities_of_different_types_stay_apart():
    text = "Anna Berlin Bob Acme"
    tags = ["B-PER", "I-LOC", "B-PER", "B-ORG"]
    assert decode_entities(tags, [0.1, 0.2, 0.3, 0.4], spans_of(text), text) == [
        Entity("PER", "Anna", 0, 4, 0.1),
        Entity("LOC", "Berlin", 5, 11, 0.2),
        Entity("PER", "Bob", 12, 15, 0.3),
        Entity("ORG", "Acme", 16, 20, 0.4),
    ]


def test_decode_b_after_b_of_the_same_type_starts_a_new_entity():
    text = "Anna Bob"
    assert decode_entities(["B-PER", "B-PER"], [1.0, 1.0], spans_of(text), text) == [
        Entity("PER", "Anna", 0, 4, 1.0),
        Entity("PER", "Bob", 5, 8, 1.0),
    ]
    assert decode_entities(["O", "O"], [1.0, 1.0], spans_of(text), text) == []


# ------------------------------------------------------------------------------------------------------ case types


@pytest.mark.parametrize(("word", "case"), [
    ("lives", LOWER), ("42", LOWER), (".", LOWER), ("Hamburg", TITLE), ("I", TITLE), ("EU", UPPER),
    ("U.S.", UPPER), ("McDonald", MIXED), ("iPhone", MIXED), ("Élodie", TITLE),
])
def test_word_case(word, case):
    assert word_case(word) == case


def test_case_types_mark_every_sub_token_of_a_word_and_only_with_case_features(tokenizer):
    plain = task_for(tokenizer).encode(data(S0)).features[0]
    assert set(plain.get("token_type_ids", [0])) == {0}
    cased = TokenClassification(LABELS, tokenizer, 64, document_context=False, case_features=True)
    feature = cased.encode(data(S0)).features[0]
    # [CLS] anna lives in ham ##burg . [SEP]
    assert feature["input_ids"] == ids(tokenizer, "[CLS]", "anna", "lives", "in", "ham", "##burg", ".", "[SEP]")
    assert feature["token_type_ids"] == [0, TITLE, LOWER, LOWER, TITLE, TITLE, LOWER, 0]
    assert feature["labels"] == plain["labels"]


def test_case_types_cover_the_context_words_too(tokenizer):
    cased = TokenClassification(LABELS, tokenizer, 64, document_context=True, case_features=True)
    s1_upper = TokenExample(("BERLIN", "is", "big", "."), S1.tags, 0, "f.conll:9")
    feature = cased.encode(data(S0, s1_upper)).features[0]  # S0 with S1 after it as context
    assert feature["token_type_ids"][7:11] == [UPPER, LOWER, LOWER, LOWER]


def test_case_types_of_raw_text_follow_the_original_spelling(tokenizer, case_types_of_text):
    cased = TokenClassification(LABELS, tokenizer, 64, case_features=True)
    text = "Anna lives in HAMBURG."
    enc = tokenizer(text, return_offsets_mapping=True)
    types = case_types_of_text(cased, text, enc.word_ids(), enc["offset_mapping"])
    assert enc.tokens() == ["[CLS]", "anna", "lives", "in", "ham", "##burg", ".", "[SEP]"]
    assert types == [0, TITLE, LOWER, LOWER, UPPER, UPPER, LOWER, 0]


def test_case_rows_start_as_copies_of_type_zero(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    tok = BertTokenizerFast(vocab={piece: i for i, piece in enumerate(SPECIALS + PIECES)})
    model = TokenClassification(LABELS, tok, case_features=True).build_model(str(tmp_path), {})
    table = model.bert.embeddings.token_type_embeddings.weight
    assert model.config.type_vocab_size == table.shape[0] == 5
    for row in (TITLE, UPPER, MIXED):
        assert torch.equal(table[row], table[0])
    assert not torch.equal(table[1], table[0])  # the second segment keeps its own row


# ------------------------------------------------------------------------------------------ raw text (predict, serve)


def test_one_sentence_text_is_encoded_as_the_tokenizer_encodes_it(tokenizer, case_types_of_text):
    """A request of one sentence reaches the network as it always did: the tokenizer's own encoding of the text,
    with the case types of its words."""
    cased = TokenClassification(LABELS, tokenizer, 64, case_features=True)
    text = "Anna lives in HAMBURG."
    encoding = cased.encode_texts([text])
    enc = tokenizer(text, return_offsets_mapping=True)
    assert encoding.features == [{"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                  "token_type_ids": case_types_of_text(cased, text, enc.word_ids(),
                                                                       enc["offset_mapping"])}]
    assert encoding.positions == [[1, 2, 3, 4, 6]]  # anna lives in ham(burg) .
    assert encoding.spans == [[(0, 4), (5, 10), (11, 13), (14, 21), (21, 22)]]
    assert (encoding.text, encoding.sentence) == ([0], [0])


@pytest.mark.parametrize("context_length", [None, 12])
def test_a_document_is_encoded_as_evaluation_encodes_its_sentences(tokenizer, context_length):
    """Sentences sent as one document get the same inputs, neighbours as context included, that `encode` gives
    the same sentences read from a labeled file; word offsets point into the text."""
    task = TokenClassification(LABELS, tokenizer, 64, document_context=True, context_length=context_length,
                               case_features=True)
    text = "\n".join(" ".join(ex.tokens) for ex in (S0, S1, S2)) + "\n"
    encoding = task.encode_texts([text, " ".join(S3.tokens)])
    expected = task.encode(data(S0, S1, S2, S3))
    assert encoding.features == [{k: v for k, v in f.items() if k != "labels"} for f in expected.features]
    assert encoding.positions == [[p for p, label in enumerate(f["labels"]) if label != IGNORE]
                                  for f in expected.features]
    assert (encoding.text, encoding.sentence) == ([0, 0, 0, 1], [0, 1, 2, 3])
    words = [[text[a:b] for a, b in spans] for spans in encoding.spans[:3]]
    assert words == [list(ex.tokens) for ex in (S0, S1, S2)]


def test_sentences_split_at_line_breaks_and_sentence_ends(tokenizer):
    encoding = task_for(tokenizer, document_context=True).encode_texts(["Anna lives in Hamburg. Berlin is big.\nBob"])
    assert encoding.sentence == [0, 1, 2]
    text = "Anna lives in Hamburg. Berlin is big.\nBob"
    assert [[text[a:b] for a, b in spans] for spans in encoding.spans] == [
        ["Anna", "lives", "in", "Hamburg", "."], ["Berlin", "is", "big", "."], ["Bob"]]


def test_a_sentence_longer_than_max_length_is_cut_into_pieces_not_truncated(tokenizer):
    task = task_for(tokenizer, max_length=8, document_context=True)  # 6 sub-tokens of words per input
    text = "Anna lives in Hamburg Anna lives in Hamburg Bob"  # 11 sub-tokens, no sentence end
    encoding = task.encode_texts([text])
    assert encoding.sentence == [0, 0]
    assert [[text[a:b] for a, b in spans] for spans in encoding.spans] == [
        ["Anna", "lives", "in", "Hamburg", "Anna"], ["lives", "in", "Hamburg", "Bob"]]
    assert all(len(f["input_ids"]) <= 8 for f in encoding.features)
    # the second piece (5 sub-tokens) has room for one word of the first as context
    assert encoding.features[1]["input_ids"] == ids(tokenizer, "[CLS]", "anna", "lives", "in", "ham", "##burg",
                                                    "bob", "[SEP]")
    assert encoding.positions[1] == [2, 3, 4, 6]


def test_empty_text_has_no_inputs(tokenizer):
    encoding = task_for(tokenizer).encode_texts(["", "  \n "])
    assert (encoding.features, encoding.text, encoding.sentence) == ([], [], [])


def test_a_word_with_inner_punctuation_is_one_word_as_in_conll(tokenizer):
    """"U.S." is one CoNLL word: one tag, read from its first sub-token, and the case type of the whole word;
    the tokenizer's pre-tokenizer alone would make four words of it."""
    cased = TokenClassification(LABELS, tokenizer, 64, case_features=True)
    text = "Anna lives in U.S."
    encoding = cased.encode_texts([text])
    (feature,) = encoding.features
    assert tokenizer.convert_ids_to_tokens(feature["input_ids"]) == [
        "[CLS]", "anna", "lives", "in", "[UNK]", ".", "[UNK]", ".", "[SEP]"]
    assert feature["token_type_ids"] == [0, TITLE, LOWER, LOWER, UPPER, UPPER, UPPER, UPPER, 0]
    assert encoding.positions == [[1, 2, 3, 4]]
    assert [text[a:b] for a, b in encoding.spans[0]] == ["Anna", "lives", "in", "U.S."]
