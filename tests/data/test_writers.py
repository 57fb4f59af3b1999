"""write_data writes what read_file reads back unchanged."""

from __future__ import annotations

import pytest

from goldmine.data.readers import read_file
from goldmine.data.schema import DataKind, LabeledData, TextExample, TokenExample
from goldmine.data.writers import write_data

TRICKY_TEXTS = ["plain", "with, comma", 'with "quotes"', "two\nlines", "tab\there", "  spaces kept  ", "Grüße ✓"]


def content(data: LabeledData) -> list[tuple]:
    if data.kind is DataKind.TOKENS:
        return [(ex.tokens, ex.tags, ex.document) for ex in data.examples]
    return [(ex.text, ex.text_b, ex.labels) for ex in data.examples]


def round_trip(data: LabeledData, path) -> LabeledData:
    assert write_data(data, path) == path
    back = read_file(path)
    assert back.kind is data.kind
    assert back.multi_label is data.multi_label
    assert content(back) == content(data)
    return back


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_single_label_round_trip(tmp_path, suffix):
    examples = [TextExample(text, (label,)) for text, label in zip(TRICKY_TEXTS, "abcabca", strict=True)]
    back = round_trip(LabeledData(DataKind.TEXT, examples), tmp_path / f"out{suffix}")
    assert len(back) == 7


def test_csv_layout(tmp_path):
    data = LabeledData(DataKind.TEXT, [TextExample("hi, you", ("greet",)), TextExample("bye", ("leave",))])
    path = write_data(data, tmp_path / "out.csv")
    assert path.read_text(encoding="utf-8") == 'text,label\n"hi, you",greet\nbye,leave\n'


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_multi_label_round_trip(tmp_path, suffix):
    examples = [
        TextExample("one", ("sports", "news")),
        TextExample("two, three", ("news",)),
        TextExample("four", ("weather", "sports", "news")),
    ]
    round_trip(LabeledData(DataKind.TEXT, examples, multi_label=True), tmp_path / f"out{suffix}")


def test_multi_label_csv_uses_the_separator(tmp_path):
    examples = [TextExample("one", ("sports", "news")), TextExample("two", ("news",))]
    path = write_data(LabeledData(DataKind.TEXT, examples, multi_label=True), tmp_path / "out.csv")
    assert path.read_text(encoding="utf-8") == "text,label\none,sports|news\ntwo,news\n"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_multi_label_data_with_one_label_per_row_stays_multi_label(tmp_path, suffix):
    """A split of multi-label data can hold only single-label rows; it must not read back as single-label."""
    examples = [TextExample("one", ("sports",)), TextExample("two", ("news",))]
    round_trip(LabeledData(DataKind.TEXT, examples, multi_label=True), tmp_path / f"out{suffix}")


def test_multi_label_csv_with_one_label_per_row_writes_list_cells(tmp_path):
    examples = [TextExample("one", ("sports",)), TextExample("two", ("news",))]
    path = write_data(LabeledData(DataKind.TEXT, examples, multi_label=True), tmp_path / "out.csv")
    assert path.read_text(encoding="utf-8") == 'text,label\none,"[""sports""]"\ntwo,"[""news""]"\n'


def test_multi_label_jsonl_writes_lists(tmp_path):
    data = LabeledData(DataKind.TEXT, [TextExample("ä", ("x", "y"))], multi_label=True)
    path = write_data(data, tmp_path / "out.jsonl")
    assert path.read_text(encoding="utf-8") == '{"text": "ä", "label": ["x", "y"]}\n'


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_pair_round_trip(tmp_path, suffix):
    examples = [
        TextExample("A man, sleeping", ("entailment",), text_b="A person rests"),
        TextExample('He said "no"', ("contradiction",), text_b="two\nlines"),
    ]
    back = round_trip(LabeledData(DataKind.PAIR, examples), tmp_path / f"out{suffix}")
    assert back.examples[1].text_b == "two\nlines"


def test_pair_csv_header(tmp_path):
    data = LabeledData(DataKind.PAIR, [TextExample("a", ("yes",), text_b="b")])
    path = write_data(data, tmp_path / "out.csv")
    assert path.read_text(encoding="utf-8") == "text_a,text_b,label\na,b,yes\n"


def test_conll_round_trip_keeps_documents(tmp_path):
    examples = [
        TokenExample(("EU", "rejects", "German", "call"), ("B-ORG", "O", "B-MISC", "O"), 0),
        TokenExample(("Peter", "Blackburn"), ("B-PER", "I-PER"), 0),
        TokenExample(("BRUSSELS",), ("B-LOC",), 1),
        TokenExample(("New", "York", "New", "York"), ("B-LOC", "I-LOC", "B-LOC", "I-LOC"), 2),
    ]
    path = tmp_path / "sub" / "out.conll"  # parent directories are created
    round_trip(LabeledData(DataKind.TOKENS, examples), path)
    assert path.read_text(encoding="utf-8") == (
        "-DOCSTART- O\n\nEU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\nPeter B-PER\nBlackburn I-PER\n\n"
        "-DOCSTART- O\n\nBRUSSELS B-LOC\n\n-DOCSTART- O\n\nNew B-LOC\nYork I-LOC\nNew B-LOC\nYork I-LOC\n"
    )


def test_conll_document_grouping_survives_a_subset(tmp_path):
    """After a split the document numbers have gaps; the grouping is what must survive."""
    examples = [
        TokenExample(("a",), ("O",), 2),
        TokenExample(("b",), ("B-X",), 2),
        TokenExample(("c",), ("O",), 5),
        TokenExample(("d",), ("O",), 9),
        TokenExample(("e",), ("O",), 9),
    ]
    write_data(LabeledData(DataKind.TOKENS, examples), tmp_path / "out.txt")
    back = read_file(tmp_path / "out.txt")
    assert [(ex.tokens, ex.document) for ex in back.examples] == [
        (("a",), 0), (("b",), 0), (("c",), 1), (("d",), 2), (("e",), 2)
    ]


def test_conll_read_write_read_is_stable(tmp_path):
    source = tmp_path / "in.conll"
    source.write_text("-DOCSTART- -X- -X- O\n\nPeter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n\nHi UH O O\n",
                      encoding="utf-8")
    first = read_file(source)  # IOB1, four columns
    assert content(first) == [(("Peter", "Blackburn"), ("B-PER", "I-PER"), 0), (("Hi",), ("O",), 0)]
    round_trip(first, tmp_path / "out.conll")
