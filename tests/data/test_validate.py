"""check_splits: dev/test labels the training data never had are errors at their exact line."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldmine.data.readers import read_file
from goldmine.data.schema import DataKind, LabeledData
from goldmine.data.validate import check_splits
from goldmine.errors import DataError


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture
def sentiment_train(tmp_path) -> LabeledData:
    return read_file(write(tmp_path, "train.csv", "text,label\ngreat,positive\nawful,negative\nfine,positive\n"))


def test_known_labels_pass(tmp_path, sentiment_train):
    dev = read_file(write(tmp_path, "dev.csv", "text,label\nnice,positive\nbad,negative\n"))
    assert check_splits(sentiment_train, {"dev": dev, "test": dev}) is None


def test_typo_in_dev_label_is_reported_with_a_suggestion(tmp_path, sentiment_train):
    dev_path = write(tmp_path, "dev.csv", "text,label\nnice,positive\nok,postive\nbad,negative\n")
    with pytest.raises(DataError) as info:
        check_splits(sentiment_train, {"dev": read_file(dev_path)})
    err = info.value
    line = f"{dev_path}:3: label 'postive' is not one of ['negative', 'positive'] (did you mean 'positive'?)"
    assert [str(issue) for issue in err.issues] == [line]
    assert str(err) == f"labels that the training data never had: 1 problem(s)\n  {line}"


def test_unknown_labels_in_dev_and_test_are_all_reported(tmp_path, sentiment_train):
    dev = read_file(write(tmp_path, "dev.csv", "text,label\na,postive\nb,negative\nc,neutral\n"))
    test_lines = '{"text": "x", "label": "positive"}\n{"text": "y", "label": "Negative"}\n'
    test_path = write(tmp_path, "test.jsonl", test_lines)
    with pytest.raises(DataError) as info:
        check_splits(sentiment_train, {"dev": dev, "test": read_file(test_path)})
    shown = "['negative', 'positive']"
    assert [str(issue) for issue in info.value.issues] == [
        f"{dev.path}:2: label 'postive' is not one of {shown} (did you mean 'positive'?)",
        f"{dev.path}:4: label 'neutral' is not one of {shown}",
        f"{test_path}:2: label 'Negative' is not one of {shown} (did you mean 'negative'?)",
    ]


def test_multi_label_unknown_labels_point_at_the_row(tmp_path):
    train = read_file(write(tmp_path, "train.csv", "text,label\na,sports|news\nb,news\n"))
    dev = read_file(write(tmp_path, "dev.csv", "text,label\nc,news\nd,sport|weather\n"))
    with pytest.raises(DataError) as info:
        check_splits(train, {"dev": dev})
    assert [(issue.line, issue.reason) for issue in info.value.issues] == [
        (3, "label 'sport' is not one of ['news', 'sports'] (did you mean 'sports'?)"),
        (3, "label 'weather' is not one of ['news', 'sports']"),
    ]


def test_ner_unknown_entity_type_in_dev_is_reported_at_its_token_line(tmp_path):
    train_lines = "Anna B-PER\nlives O\nin O\nBonn B-LOC\n\nNew B-LOC\nYork I-LOC\n"
    train = read_file(write(tmp_path, "train.conll", train_lines))
    dev_path = write(
        tmp_path,
        "dev.conll",
        "-DOCSTART- O\n"  # 1
        "\n"  # 2
        "Ben B-PER\n"  # 3
        "\n"  # 4
        "He O\n"  # 5
        "joined O\n"  # 6
        "Acme B-ORG\n"  # 7
        "Corp I-ORG\n"  # 8
        "in O\n"  # 9
        "Rome B-LOC\n"  # 10
        "\n"  # 11
        "Cool B-MISC\n",  # 12
    )
    with pytest.raises(DataError) as info:
        check_splits(train, {"dev": read_file(dev_path)})
    shown = "['B-LOC', 'B-PER', 'I-LOC', 'I-PER', 'O']"
    assert [str(issue) for issue in info.value.issues] == [
        f"{dev_path}:7: label 'B-ORG' is not one of {shown} (did you mean 'B-PER'?)",
        f"{dev_path}:8: label 'I-ORG' is not one of {shown} (did you mean 'I-PER'?)",
        f"{dev_path}:12: label 'B-MISC' is not one of {shown}",
    ]


def test_ner_inside_tag_of_a_known_type_is_known_even_if_train_never_used_it(tmp_path):
    train = read_file(write(tmp_path, "train.conll", "Anna B-PER\n"))
    dev = read_file(write(tmp_path, "dev.conll", "Anna B-PER\nSmith I-PER\n"))
    assert train.label_names() == ["O", "B-PER", "I-PER"]
    assert check_splits(train, {"dev": dev}) is None


def test_kind_mismatch(tmp_path, sentiment_train):
    dev_path = write(tmp_path, "dev.csv", "text_a,text_b,label\na,b,positive\n")
    test_path = write(tmp_path, "test.conll", "Anna B-PER\n")
    with pytest.raises(DataError) as info:
        check_splits(sentiment_train, {"dev": read_file(dev_path), "test": read_file(test_path)})
    assert [(issue.path, issue.line, issue.reason) for issue in info.value.issues] == [
        (str(dev_path), 0, "dev holds pair data but train holds text"),
        (str(test_path), 0, "test holds tokens data but train holds text"),
    ]


def test_empty_train():
    train = LabeledData(DataKind.TEXT, [], "train.csv")
    dev = LabeledData(DataKind.TEXT, [], "dev.csv")
    with pytest.raises(DataError) as info:
        check_splits(train, {"dev": dev})
    assert [(issue.path, issue.line, issue.reason) for issue in info.value.issues] == [
        ("train.csv", 0, "training data is empty")
    ]
    assert "train.csv:0: training data is empty" in str(info.value)


def test_empty_dev_is_not_an_error(sentiment_train):
    assert check_splits(sentiment_train, {"dev": LabeledData(DataKind.TEXT, [], "dev.csv")}) is None
