"""quality_report: duplicates, near duplicates, conflicts, leakage, lengths and label balance, with exact numbers."""

from __future__ import annotations

import io
import json

from rich.console import Console

from goldmine.data.report import normalize_text, quality_report, render_report
from goldmine.data.schema import DataKind, LabeledData, TextExample, TokenExample


def text(value: str, label: str, source: str, text_b: str | None = None) -> TextExample:
    return TextExample(value, (label,), text_b, source)


def texts(*examples: TextExample, kind: DataKind = DataKind.TEXT) -> LabeledData:
    return LabeledData(kind, list(examples))


def words_times_two(values: list[str]) -> list[int]:
    """A fake tokenizer: two model tokens per word."""
    return [2 * len(value.split()) for value in values]


def test_normalize_text_folds_case_unicode_spacing_and_punctuation():
    assert normalize_text("  Hello,\tWORLD!!  ") == "hello world"
    assert normalize_text("ﬁne — “quoted”") == "fine quoted"
    assert normalize_text("¿Qué?") == "qué"
    assert normalize_text("$5 + 3") == "$5 + 3"  # symbols are not punctuation


def test_label_balance_numbers_are_exact():
    data = texts(*[text(f"a{i}", "a", f"f:{i}") for i in range(6)], text("b0", "b", "f:6"), text("b1", "b", "f:7"))
    split = quality_report({"train": data}).splits["train"]
    assert split.examples == 8
    assert split.label_counts == {"a": 6, "b": 2}
    assert split.label_shares == {"a": 0.75, "b": 0.25}
    assert split.imbalance_ratio == 3.0
    assert split.missing_labels == []


def test_exact_duplicates_are_counted_with_sources():
    data = texts(
        text("same", "a", "f:1"),
        text("same", "a", "f:2"),
        text("same", "a", "f:3"),
        text("other", "b", "f:4"),
        text("other", "b", "f:5"),
        text("unique", "b", "f:6"),
    )
    report = quality_report({"train": data})
    split = report.splits["train"]
    assert split.exact_duplicates == 3
    assert [(g.text, g.count, g.sources) for g in split.duplicate_examples] == [
        ("same", 3, ["f:1", "f:2", "f:3"]),
        ("other", 2, ["f:4", "f:5"]),
    ]
    assert split.near_duplicates == 0
    assert split.conflicts == 0
    assert report.warnings == ["train: 3 exact duplicate texts"]


def test_near_duplicates_exclude_exact_ones():
    data = texts(
        text("Hello world", "a", "f:1"),
        text("Hello world", "a", "f:2"),
        text("hello,   WORLD!", "a", "f:3"),
        text("ＨＥＬＬＯ world.", "a", "f:4"),
        text("!!!", "a", "f:5"),
        text("???", "a", "f:6"),  # nothing left after normalising: not a near duplicate of "!!!"
    )
    split = quality_report({"train": data}).splits["train"]
    assert split.exact_duplicates == 1
    assert split.near_duplicates == 2
    [group] = split.near_duplicate_examples
    assert group.variants == ["Hello world", "hello,   WORLD!", "ＨＥＬＬＯ world."]
    assert group.count == 4
    assert group.sources == ["f:1", "f:2", "f:3", "f:4"]


def test_conflicting_labels_list_sources_per_label():
    data = texts(
        text("Great movie!", "pos", "f:1"),
        text("great movie", "neg", "f:2"),
        text("Great movie!", "pos", "f:3"),
        text("fine", "pos", "f:4"),
    )
    report = quality_report({"train": data})
    split = report.splits["train"]
    assert split.conflicts == 1
    [conflict] = split.conflict_examples
    assert conflict.text == "Great movie!"
    assert conflict.labels == {"pos": ["f:1", "f:3"], "neg": ["f:2"]}
    assert "train: 1 texts with conflicting labels" in report.warnings


def test_leakage_between_every_pair_of_splits():
    train = texts(text("alpha", "a", "tr:1"), text("beta", "b", "tr:2"), text("gamma", "a", "tr:3"))
    dev = texts(
        text("alpha", "a", "dv:1"), text("alpha", "a", "dv:2"), text("Beta.", "b", "dv:3"), text("x", "a", "dv:4")
    )
    test = texts(text("gamma", "a", "te:1"), text("x", "a", "te:2"), text("new", "b", "te:3"))
    report = quality_report({"train": train, "dev": dev, "test": test})
    assert [(leak.first, leak.second, leak.exact, leak.near) for leak in report.leakage] == [
        ("train", "dev", 2, 1),
        ("train", "test", 1, 0),
        ("dev", "test", 1, 0),
    ]
    train_dev = report.leakage[0]
    assert [(e.text, e.exact, e.first_sources, e.second_sources) for e in train_dev.examples] == [
        ("alpha", True, ["tr:1"], ["dv:1", "dv:2"]),
        ("Beta.", False, ["tr:2"], ["dv:3"]),
    ]
    assert report.warnings == [
        "dev: 1 exact duplicate texts",
        "dev: 2 texts also in train (leakage)",
        "dev: 1 texts near-identical to texts in train (leakage)",
        "test: 1 texts also in train (leakage)",
        "test: 1 texts also in dev (leakage)",
    ]


def test_lengths_and_over_length_with_fake_tokenizer():
    data = texts(*[text(" ".join(["w"] * n), "a", f"f:{n}") for n in (1, 2, 3, 4, 10)])
    report = quality_report({"train": data}, count_tokens=words_times_two, max_length=6)
    split = report.splits["train"]
    assert (split.word_lengths.min, split.word_lengths.median, split.word_lengths.max) == (1, 3.0, 10)
    assert split.word_lengths.mean == 4.0
    assert split.word_lengths.p95 == 8.8
    assert (split.token_lengths.min, split.token_lengths.mean, split.token_lengths.max) == (2, 8.0, 20)
    assert split.over_length == 2
    assert "train: 2 texts exceed 6 tokens and will be truncated" in report.warnings


def test_without_tokenizer_token_lengths_are_absent():
    split = quality_report({"train": texts(text("a b c", "a", "f:1"))}).splits["train"]
    assert split.token_lengths is None
    assert split.over_length is None
    assert split.word_lengths.max == 3


def test_pairs_count_both_texts_and_duplicates_are_whole_pairs():
    data = texts(
        text("a cat", "yes", "p:1", "a feline"),
        text("a cat", "no", "p:2", "a dog here"),
        text("A cat.", "yes", "p:3", "a feline"),
        kind=DataKind.PAIR,
    )
    report = quality_report({"train": data}, count_tokens=words_times_two, max_length=9)
    split = report.splits["train"]
    assert split.word_lengths.max == 5
    assert split.token_lengths.max == 10
    assert split.over_length == 1
    assert split.exact_duplicates == 0  # same first text, different second text
    assert split.near_duplicates == 1
    assert split.near_duplicate_examples[0].variants == ["a cat ||| a feline", "A cat. ||| a feline"]
    assert split.conflicts == 0


def test_token_data_conflicts_compare_tags_and_ignore_punctuation_tokens():
    data = texts(
        TokenExample(("Paris", "is", "nice"), ("B-LOC", "O", "O"), source="n:1"),
        TokenExample(("paris", "is", "nice", "."), ("B-PER", "O", "O", "O"), source="n:3"),
        TokenExample(("Rome", ",", "Italy"), ("B-LOC", "O", "B-LOC"), source="n:5"),
        TokenExample(("Rome", "Italy"), ("B-LOC", "B-LOC"), source="n:7"),
        kind=DataKind.TOKENS,
    )
    split = quality_report({"train": data}).splits["train"]
    assert split.label_counts == {"LOC": 5, "PER": 1}
    assert split.word_lengths.max == 4
    assert split.near_duplicates == 2
    assert split.conflicts == 1
    assert split.conflict_examples[0].labels == {"B-LOC O O": ["n:1"], "B-PER O O": ["n:3"]}


def test_missing_labels_and_imbalance_are_warned():
    train = texts(*[text(f"a{i}", "a", f"t:{i}") for i in range(10)], text("b", "b", "t:10"))
    dev = texts(text("dev a", "a", "d:1"))
    report = quality_report({"train": train, "dev": dev})
    assert report.splits["dev"].missing_labels == ["b"]
    assert report.warnings == [
        "train: label imbalance 10.0:1 ('a' 10 vs 'b' 1)",
        "dev: no examples of b (present in other splits)",
    ]


def test_clean_data_has_no_warnings_and_empty_split_is_fine():
    train = texts(text("one", "a", "f:1"), text("two", "b", "f:2"))
    report = quality_report({"train": train, "test": texts()}, count_tokens=words_times_two)
    assert report.warnings == []
    empty = report.splits["test"]
    assert (empty.examples, empty.word_lengths, empty.imbalance_ratio, empty.over_length) == (0, None, None, 0)


def test_to_dict_is_json_serialisable_and_render_runs():
    train = texts(
        text("Same text", "a", "f:1"),
        text("same text!", "b", "f:2"),
        text("[bold]x[/]", "a", "f:3"),
        text("[bold]x[/]", "a", "f:4"),
    )
    dev = texts(text("Same text", "a", "g:1"))
    report = quality_report({"train": train, "dev": dev}, count_tokens=words_times_two, max_length=2)
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["splits"]["train"]["near_duplicates"] == 1
    assert payload["leakage"][0]["exact"] == 1
    assert payload["warnings"] == report.warnings

    out = io.StringIO()
    render_report(report, Console(file=out, width=140))
    rendered = out.getvalue()
    assert "Label balance" in rendered
    assert "Findings" in rendered
    assert "dev: 1 texts also in train (leakage)" in rendered
    assert "[bold]x[/]" in rendered  # user text is shown literally, not as markup


def test_render_clean_report_says_no_problems():
    out = io.StringIO()
    render_report(quality_report({"train": texts(text("one", "a", "f:1"))}), Console(file=out, width=100))
    assert "No problems found." in out.getvalue()
