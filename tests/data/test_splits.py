"""load_splits: given files are used as they are, missing dev/test are split off train reproducibly."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldmine.config import DataConfig
from goldmine.data.schema import DataKind
from goldmine.data.splits import load_splits, read_options
from goldmine.errors import ConfigError, DataError


def write_csv(path: Path, labels: list[str], prefix: str = "text") -> Path:
    path.write_text("text,label\n" + "".join(f"{prefix} {i},{label}\n" for i, label in enumerate(labels)),
                    encoding="utf-8")
    return path


def sentiment(n: int) -> list[str]:
    return ["positive" if i % 5 < 3 else "negative" for i in range(n)]


def sources(data) -> list[str]:
    return [ex.source for ex in data.examples]


@pytest.fixture
def train_file(tmp_path) -> Path:
    return write_csv(tmp_path / "train.csv", sentiment(50))


def test_train_only_is_split_80_10_10(train_file):
    splits = load_splits(DataConfig(train=train_file))
    assert list(splits) == ["train", "dev", "test"]
    assert [len(splits[name]) for name in splits] == [40, 5, 5]
    assert splits["train"].path == str(train_file)
    assert splits["dev"].path == f"{train_file}[dev split]"
    assert splits["test"].path == f"{train_file}[test split]"
    everything = sorted(sum((sources(part) for part in splits.values()), []), key=lambda s: int(s.rsplit(":", 1)[1]))
    assert everything == [f"{train_file}:{line}" for line in range(2, 52)]  # every row once, none twice


def test_split_is_stratified(train_file):
    splits = load_splits(DataConfig(train=train_file))
    assert dict(splits["train"].label_counts()) == {"positive": 24, "negative": 16}
    assert sorted(splits["dev"].label_counts().values()) == [2, 3]
    assert sorted(splits["test"].label_counts().values()) == [2, 3]


def test_split_is_reproducible_and_follows_the_seed(train_file):
    first = load_splits(DataConfig(train=train_file))
    again = load_splits(DataConfig(train=train_file))
    other = load_splits(DataConfig(train=train_file, split_seed=14))
    assert [sources(part) for part in first.values()] == [sources(part) for part in again.values()]
    assert sources(first["test"]) != sources(other["test"])


def test_configured_shares(train_file):
    splits = load_splits(DataConfig(train=train_file, split=(0.6, 0.2, 0.2)))
    assert [len(part) for part in splits.values()] == [30, 10, 10]


def test_train_and_dev_split_only_test_off_train(tmp_path, train_file):
    dev_file = write_csv(tmp_path / "dev.csv", sentiment(7), prefix="dev")
    splits = load_splits(DataConfig(train=train_file, dev=dev_file))
    assert [len(part) for part in splits.values()] == [45, 7, 5]
    assert splits["dev"].path == str(dev_file)
    assert sources(splits["dev"]) == [f"{dev_file}:{line}" for line in range(2, 9)]
    assert splits["test"].path == f"{train_file}[test split]"
    assert all(source.startswith(f"{train_file}:") for source in sources(splits["test"]))
    assert not set(sources(splits["train"])) & set(sources(splits["test"]))


def test_train_and_test_split_only_dev_off_train(tmp_path, train_file):
    test_file = write_csv(tmp_path / "test.csv", sentiment(6), prefix="test")
    splits = load_splits(DataConfig(train=train_file, test=test_file))
    assert [len(part) for part in splits.values()] == [45, 5, 6]
    assert splits["dev"].path == f"{train_file}[dev split]"
    assert splits["test"].path == str(test_file)


def test_all_three_files_are_used_as_given(tmp_path, train_file):
    dev_file = write_csv(tmp_path / "dev.csv", sentiment(7), prefix="dev")
    test_file = write_csv(tmp_path / "test.csv", sentiment(6), prefix="test")
    splits = load_splits(DataConfig(train=train_file, dev=dev_file, test=test_file))
    assert [len(part) for part in splits.values()] == [50, 7, 6]
    assert [part.path for part in splits.values()] == [str(train_file), str(dev_file), str(test_file)]
    assert sources(splits["train"]) == [f"{train_file}:{line}" for line in range(2, 52)]


def test_unknown_label_in_dev_names_the_dev_file_and_line(tmp_path, train_file):
    dev_file = tmp_path / "dev.csv"
    dev_file.write_text("text,label\ngood,positive\nfine,postive\nbad,negative\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_splits(DataConfig(train=train_file, dev=dev_file))
    assert [str(issue) for issue in info.value.issues] == [
        f"{dev_file}:3: label 'postive' is not one of ['negative', 'positive'] (did you mean 'positive'?)"
    ]
    assert f"{dev_file}:3: label 'postive'" in str(info.value)


def test_invalid_dev_file_is_reported(tmp_path, train_file):
    dev_file = tmp_path / "dev.csv"
    dev_file.write_text("text,label\ngood,\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_splits(DataConfig(train=train_file, dev=dev_file))
    assert [str(issue) for issue in info.value.issues] == [f"{dev_file}:2: empty label in 'label'"]


def test_missing_dev_file(tmp_path, train_file):
    with pytest.raises(DataError) as info:
        load_splits(DataConfig(train=train_file, dev=tmp_path / "nope.csv"))
    assert [str(issue) for issue in info.value.issues] == [f"{tmp_path / 'nope.csv'}:0: file not found"]


def test_missing_train_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^data\.train: no training file given"):
        load_splits(DataConfig())


def test_configured_columns_are_used(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("utterance,intent\n" + "".join(f"u{i},{'ab'[i % 2]}\n" for i in range(20)), encoding="utf-8")
    splits = load_splits(DataConfig(train=path, text_column="utterance", label_column="intent"))
    assert [len(part) for part in splits.values()] == [16, 2, 2]
    assert splits["train"].kind is DataKind.TEXT


def test_multi_label_flag_is_passed_to_the_reader(train_file):
    splits = load_splits(DataConfig(train=train_file), multi_label=True)
    assert [part.multi_label for part in splits.values()] == [True, True, True]


def test_ner_train_only_is_split(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("".join(f"w{i} B-{'PER' if i % 2 else 'LOC'}\nx O\n\n" for i in range(20)), encoding="utf-8")
    splits = load_splits(DataConfig(train=path))
    assert [len(part) for part in splits.values()] == [16, 2, 2]
    assert all(part.kind is DataKind.TOKENS for part in splits.values())


def test_read_options_follow_the_config():
    options = read_options(DataConfig(text_column="t", text_b_column="u", label_column="l", label_separator=";",
                                      scheme="iob1", strict=True), multi_label=False)
    assert (options.text_column, options.text_b_column, options.label_column) == ("t", "u", "l")
    assert (options.label_separator, options.scheme, options.strict, options.multi_label) == (";", "iob1", True, False)
