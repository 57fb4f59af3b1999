"""split_data: reproducible, stratified, and robust to classes too rare to stratify."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from goldmine.data.schema import DataKind, LabeledData, TextExample, TokenExample
from goldmine.data.split import split_data
from goldmine.errors import ConfigError


def text_data(labels: list[str]) -> LabeledData:
    examples = [TextExample(f"text {i}", (label,), source=f"f.csv:{i + 2}") for i, label in enumerate(labels)]
    return LabeledData(DataKind.TEXT, examples, "f.csv")


def imbalanced() -> LabeledData:
    """200 examples: 140 a, 40 b, 20 c, interleaved so order carries no label information."""
    labels = ["a"] * 140 + ["b"] * 40 + ["c"] * 20
    return text_data([labels[(i * 7) % 200] for i in range(200)])


def sources(data: LabeledData) -> list[str]:
    return [ex.source for ex in data.examples]


def label_counts(data: LabeledData) -> dict[str, int]:
    return dict(sorted(Counter(ex.labels[0] for ex in data.examples).items()))


def test_same_seed_gives_same_split_and_other_seed_differs():
    data = imbalanced()
    first = split_data(data, seed=3)
    again = split_data(data, seed=3)
    other = split_data(data, seed=4)
    assert [sources(part) for part in first] == [sources(part) for part in again]
    assert sources(first[0]) != sources(other[0])


def test_split_does_not_depend_on_hash_seed():
    """Labels are strings; set/hash order must not leak into the split."""
    code = (
        "from goldmine.data.schema import DataKind, LabeledData, TextExample\n"
        "from goldmine.data.split import split_data\n"
        "labels = [('x', 'y'), ('y',), ('x',), ('z', 'x'), ('w',), ('y', 'z')]\n"
        "ex = [TextExample(str(i), labels[(i * 5) % 6] if i % 17 else ('rare', 'x')) for i in range(120)]\n"
        "parts = split_data(LabeledData(DataKind.TEXT, ex, multi_label=True), seed=5)\n"
        "print([[e.text for e in p.examples] for p in parts])\n"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            stdout=subprocess.PIPE,
            text=True,
        )
        for hash_seed in ("1", "2")
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert outputs[0] == outputs[1] != ""


def test_stratification_preserves_label_shares_exactly():
    train, dev, test = split_data(imbalanced())
    assert label_counts(train) == {"a": 112, "b": 32, "c": 16}
    assert label_counts(dev) == {"a": 14, "b": 4, "c": 2}
    assert label_counts(test) == {"a": 14, "b": 4, "c": 2}


def test_sizes_match_ratios_and_splits_partition_the_data_in_original_order():
    data = text_data(["a", "b"] * 50)
    parts = split_data(data, ratios=(0.7, 0.2, 0.1))
    assert [len(part) for part in parts] == [70, 20, 10]
    all_sources = [s for part in parts for s in sources(part)]
    assert sorted(all_sources) == sorted(sources(data))
    position = {s: i for i, s in enumerate(sources(data))}
    for part in parts:
        assert [position[s] for s in sources(part)] == sorted(position[s] for s in sources(part))
        assert part.kind is DataKind.TEXT and part.path == "f.csv"


def test_zero_test_ratio_gives_empty_test_split():
    train, dev, test = split_data(imbalanced(), ratios=(0.9, 0.1, 0.0))
    assert (len(train), len(dev), len(test)) == (180, 20, 0)
    assert label_counts(dev) == {"a": 14, "b": 4, "c": 2}


def test_classes_too_rare_to_stratify_go_to_train():
    labels = ["a"] * 60 + ["b"] * 30 + ["only_two"] * 2 + ["single"]
    train, dev, test = split_data(text_data(labels))
    assert label_counts(train)["only_two"] == 2
    assert label_counts(train)["single"] == 1
    assert "only_two" not in label_counts(dev) | label_counts(test)
    assert len(train) + len(dev) + len(test) == 93
    assert (len(dev), len(test)) == (9, 9)


def test_many_classes_and_tiny_splits_do_not_crash():
    train, dev, test = split_data(text_data([f"c{i % 15}" for i in range(40)]))
    assert (len(train), len(dev), len(test)) == (32, 4, 4)


def test_multi_label_stratifies_by_combination_and_rare_combinations_by_rarest_label():
    combos = [("a",)] * 40 + [("a", "b")] * 40 + [("b",)] * 10 + [("c", "a")] * 2 + [("b", "c")] * 2 + [("c",)] * 6
    examples = [TextExample(f"t{i}", combo, source=str(i)) for i, combo in enumerate(combos)]
    data = LabeledData(DataKind.TEXT, examples, multi_label=True)
    parts = split_data(data)
    assert [len(part) for part in parts] == [80, 10, 10]

    def groups(part: LabeledData) -> dict[str, int]:
        keys = Counter("c" if "c" in ex.labels else "+".join(ex.labels) for ex in part.examples)
        return dict(sorted(keys.items()))

    assert [groups(part) for part in parts] == [
        {"a": 32, "a+b": 32, "b": 8, "c": 8},
        {"a": 4, "a+b": 4, "b": 1, "c": 1},
        {"a": 4, "a+b": 4, "b": 1, "c": 1},
    ]


def test_token_data_is_stratified_by_dominant_entity_type():
    per = (("Anna", "met", "Bo", "in", "Oslo"), ("B-PER", "O", "B-PER", "O", "B-LOC"))
    loc = (("Rain", "in", "New", "York"), ("O", "O", "B-LOC", "I-LOC"))
    none = (("Nothing", "here"), ("O", "O"))
    kinds = [per] * 30 + [loc] * 20 + [none] * 50
    examples = [TokenExample(tokens, tags, source=f"n.conll:{i}") for i, (tokens, tags) in enumerate(kinds)]
    parts = split_data(LabeledData(DataKind.TOKENS, examples))

    def dominant(part: LabeledData) -> dict[str, int]:
        names = {per[1]: "PER", loc[1]: "LOC", none[1]: "none"}
        return dict(sorted(Counter(names[ex.tags] for ex in part.examples).items()))

    assert [dominant(part) for part in parts] == [
        {"LOC": 16, "PER": 24, "none": 40},
        {"LOC": 2, "PER": 3, "none": 5},
        {"LOC": 2, "PER": 3, "none": 5},
    ]


@pytest.mark.parametrize(
    "ratios",
    [(0.5, 0.5, 0.5), (1.1, -0.1, 0.0), (0.8, 0.2), (0.8, 0.1, 0.1, 0.0), (float("nan"), 0.5, 0.5), ("a", 1, 0)],
)
def test_bad_ratios_raise_config_error_naming_split(ratios):
    with pytest.raises(ConfigError, match="split"):
        split_data(imbalanced(), ratios=ratios)  # type: ignore[arg-type]


def test_ratios_within_tolerance_are_accepted():
    parts = split_data(imbalanced(), ratios=(0.8, 0.1, 0.1 + 5e-7))
    assert [len(part) for part in parts] == [160, 20, 20]
