"""The generated demo data must be deterministic and well-formed, or `goldmine demo` trains on garbage."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from goldmine.data.report import normalize_text
from goldmine.demo.datasets import INTENT_COUNT_RANGE, DemoFiles, write_demo_data

LABELS = {
    "track_order",
    "delivery_delay_complaint",
    "cancel_order",
    "refund_request",
    "change_address",
    "reset_password",
    "update_email",
    "payment_failed",
    "card_lost",
    "talk_to_human",
}
TYPES = {"PER", "ORG", "LOC", "PRODUCT"}


def _sentences(path: Path) -> tuple[list[list[tuple[str, str]]], int]:
    """Parse the CoNLL file into sentences of (token, tag) and count DOCSTART lines."""
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    docstarts = 0
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines):
        if line.startswith("-DOCSTART-"):
            assert line == "-DOCSTART- O"
            assert lines[number + 1] == "", "DOCSTART must be followed by a blank line"
            docstarts += 1
            continue
        if not line:
            if current:
                sentences.append(current)
                current = []
            continue
        cells = line.split(" ")
        assert len(cells) == 2 and all(cells), f"line {number + 1}: {line!r}"
        current.append((cells[0], cells[1]))
    if current:
        sentences.append(current)
    return sentences, docstarts


def _spans(tags: list[str]) -> list[tuple[str, int]]:
    """(type, length) of each IOB2 entity span."""
    spans: list[tuple[str, int]] = []
    for tag in tags:
        if tag.startswith("B-"):
            spans.append((tag[2:], 1))
        elif tag.startswith("I-"):
            spans[-1] = (spans[-1][0], spans[-1][1] + 1)
    return spans


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return write_demo_data(tmp_path_factory.mktemp("demo") / "nested", seed=0)


def test_paths_and_names(files: DemoFiles) -> None:
    assert files.intents.name == "support_intents.csv" and files.intents.is_file()
    assert files.ner.name == "support_entities.conll" and files.ner.is_file()
    assert files.intents.parent == files.ner.parent


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    a = write_demo_data(tmp_path / "a", seed=7)
    b = write_demo_data(tmp_path / "b", seed=7)
    c = write_demo_data(tmp_path / "c", seed=8)
    assert a.intents.read_bytes() == b.intents.read_bytes()
    assert a.ner.read_bytes() == b.ner.read_bytes()
    assert a.intents.read_bytes() != c.intents.read_bytes()
    assert a.ner.read_bytes() != c.ner.read_bytes()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_intents_counts_and_labels(tmp_path: Path, seed: int) -> None:
    path = write_demo_data(tmp_path, seed=seed).intents
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["text", "label"]
        rows = list(reader)
    assert all(len(row) == 2 and row[0].strip() and row[1] in LABELS for row in rows)
    counts = Counter(label for _, label in rows)
    assert set(counts) == LABELS
    low, high = INTENT_COUNT_RANGE
    assert all(low <= n <= high for n in counts.values()), counts
    assert 800 <= len(rows) <= 1000  # ~90 test messages: one error costs ~1 point, not 2
    texts = [normalize_text(text) for text, _ in rows]
    assert len(set(texts)) == len(texts), "a near-duplicate could leak across splits or carry two labels"


def test_intents_are_varied(files: DemoFiles) -> None:
    with files.intents.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(row["text"] == row["text"].lower() for row in rows) > 20  # some all-lowercase messages
    assert any("," in row["text"] for row in rows)  # csv quoting is exercised
    # confusable pairs share vocabulary on purpose
    pairs = [("charge", "cancel_order", "refund_request"), ("email", "update_email", "reset_password"),
             ("address", "change_address", "update_email"), ("cancel", "cancel_order", "card_lost"),
             ("where", "track_order", "refund_request"), ("card", "payment_failed", "card_lost")]
    for word, a, b in pairs:
        for label in (a, b):
            assert any(word in row["text"].lower() for row in rows if row["label"] == label), (word, label)
    negated = [row for row in rows if re.search(r"\b(not|don't|isn't|no)\b", row["text"].lower())]
    assert len({row["label"] for row in negated}) == len(LABELS)  # "not a refund, just ..." in every intent
    assert any(re.search(r"\b(pls|u|ur|thx)\b", row["text"]) for row in rows)  # chat shorthand
    with_context = [row for row in rows if "i've been a customer for years" in row["text"].lower()]
    assert len({row["label"] for row in with_context}) >= 5  # background sentences carry no label signal


def test_conll_is_valid_iob2(files: DemoFiles) -> None:
    sentences, docstarts = _sentences(files.ner)
    assert 480 <= len(sentences) <= 540
    assert docstarts >= 25
    assert files.ner.read_text(encoding="utf-8").startswith("-DOCSTART- O\n\n")
    for sentence in sentences:
        previous = "O"
        for _, tag in sentence:
            assert tag == "O" or (tag[:2] in ("B-", "I-") and tag[2:] in TYPES), tag
            if tag.startswith("I-"):
                assert previous[2:] == tag[2:] and previous != "O", f"{tag} after {previous}: {sentence}"
            previous = tag


def test_conll_entities(files: DemoFiles) -> None:
    sentences, _ = _sentences(files.ner)
    spans = [span for sentence in sentences for span in _spans([tag for _, tag in sentence])]
    assert {kind for kind, _ in spans} == TYPES
    assert all(Counter(kind for kind, _ in spans)[kind] >= 30 for kind in TYPES)
    assert {kind for kind, length in spans if length > 1} == TYPES  # multi-token entities of every type
    assert any(length >= 3 for _, length in spans)  # e.g. "Galaxy Buds Pro", "Rio de Janeiro"
    assert any(all(tag == "O" for _, tag in sentence) for sentence in sentences)


def test_conll_punctuation_is_split(files: DemoFiles) -> None:
    sentences, _ = _sentences(files.ner)
    tokens = [token for sentence in sentences for token, _ in sentence]
    assert "." in tokens and "," in tokens and "?" in tokens
    assert not [t for t in tokens if len(t) > 1 and t[-1] in ".,?!"]


def test_conll_entity_type_depends_on_context(files: DemoFiles) -> None:
    sentences, _ = _sentences(files.ner)
    types: dict[str, set[str]] = {}
    for sentence in sentences:
        for token, tag in sentence:
            types.setdefault(token.lower(), set()).add(tag[2:] if tag != "O" else "O")
    assert {"PER", "LOC"} <= types["jordan"] and {"PER", "LOC"} <= types["paris"]  # a person or a place
    assert {"ORG", "O"} <= types["target"] and {"ORG", "O"} <= types["next"]  # a shop or a plain word
    assert {"PRODUCT", "O"} <= types["switch"] and {"PRODUCT", "O"} <= types["pixel"]
    lowered = [s for s in sentences if all(t == t.lower() for t, _ in s) and any(tag != "O" for _, tag in s)]
    assert len(lowered) >= 30  # chat tickets typed in lower case still carry their entities


def test_conll_sentences_are_unique(files: DemoFiles) -> None:
    sentences, _ = _sentences(files.ner)
    texts = [normalize_text(" ".join(token for token, _ in sentence)) for sentence in sentences]
    assert len(set(texts)) == len(texts), "a repeated sentence would be scored in test after being trained on"


def test_support_chats_echo_the_details_of_their_message(tmp_path: Path) -> None:
    import json

    from goldmine.data.readers import read_file
    from goldmine.demo.datasets import CHATS_PER_INTENT, INTENT_TEMPLATES, write_demo_chats

    path = write_demo_chats(tmp_path)
    assert path.read_bytes() == write_demo_chats(tmp_path / "again").read_bytes()  # seeded
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == CHATS_PER_INTENT * len(INTENT_TEMPLATES) == len(read_file(path).examples)  # valid chat data
    assert len({r["prompt"] for r in rows}) == len(rows)
    with_order = [r for r in rows if "#" in r["prompt"] and "order" in r["response"].lower()]
    assert with_order and all(r["prompt"].split("#")[1][:5] in r["response"] for r in with_order)


def test_the_generation_demo_trains_a_decoder_on_the_chats(tmp_path: Path, tiny_decoder_dir) -> None:
    from rich.console import Console

    from goldmine.demo.run import run_generation_demo

    with (tmp_path / "out.txt").open("w") as out:
        result = run_generation_demo(tmp_path, Console(file=out), quick=True, model=str(tiny_decoder_dir))
    assert set(result.before_after) == {"pretrained", "fine-tuned"}
    assert (result.output_dir / "adapter_config.json").is_file()
