"""goldmine.data.augment: seeded, label-preserving, never a duplicate, only ever on the train split."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from goldmine.cli import app
from goldmine.config import DataConfig, load_config
from goldmine.data.augment import augment, entity_spans, typo
from goldmine.data.readers import read_file
from goldmine.data.report import quality_report
from goldmine.data.schema import AUGMENTED, DataKind
from goldmine.data.splits import load_splits
from goldmine.data.tags import dangling_inside, is_valid_tag
from goldmine.errors import ConfigError


def test_text_augmentation_keeps_labels_and_counts(demo_files):
    data = read_file(demo_files.intents)
    out = augment(data, factor=1.0, seed=5)
    assert out.examples[: len(data)] == data.examples  # the originals first, unchanged
    added = out.examples[len(data):]
    assert len(added) == len(data)
    keys = Counter((ex.text, ex.labels) for ex in added)
    assert max(keys.values()) == 1  # no augmented example twice
    assert not set(keys) & {(ex.text, ex.labels) for ex in data.examples}  # nor a copy of an original
    originals = {ex.source: ex for ex in data.examples}
    for ex in added:
        assert ex.source.startswith(AUGMENTED)
        op, source = ex.source[len(AUGMENTED):].split(":", 1)
        original = originals[source]
        assert ex.labels == original.labels and ex.text != original.text
        words, before = ex.text.split(), original.text.split()
        if op == "delete":
            assert len(words) == len(before) - 1
        elif op == "swap":
            assert sorted(words) == sorted(before)
        else:
            assert len(words) == len(before) and sum(a != b for a, b in zip(words, before, strict=True)) == 1
    assert {ex.source.split(":")[1] for ex in added} == {"typo", "swap", "delete"}


def test_same_seed_same_result_other_seed_differs(demo_files):
    data = read_file(demo_files.intents)
    first, again, other = (augment(data, 0.5, seed=s) for s in (1, 1, 2))
    assert first.examples == again.examples
    assert first.examples != other.examples
    assert len(first) == len(data) + round(0.5 * len(data))


def test_factor_zero_is_the_data_itself_and_negative_is_an_error(demo_files):
    data = read_file(demo_files.intents)
    assert augment(data, 0) is data
    with pytest.raises(ConfigError, match="data.augment.factor: must be 0 or more"):
        augment(data, -1)


def test_ner_mention_replacement_keeps_iob2_and_entity_types(demo_files):
    data = read_file(demo_files.ner)
    out = augment(data, factor=1.0, ops=["mention"], seed=3)
    added = out.examples[len(data):]
    assert len(added) == len(data)  # sentences without entities are passed over, others edited twice
    mentions = {(kind, ex.tokens[i:j]) for ex in data.examples for i, j, kind in entity_spans(ex.tags)}
    documents = {ex.document for ex in data.examples}
    for ex in added:
        assert all(is_valid_tag(t) for t in ex.tags) and dangling_inside(list(ex.tags)) == []
        assert len(ex.tokens) == len(ex.tags)
        assert all((kind, ex.tokens[i:j]) in mentions for i, j, kind in entity_spans(ex.tags))
        assert ex.document not in documents  # on its own: document context must not borrow false neighbours
    assert len({ex.document for ex in added}) == len(added)


def test_ops_that_do_not_fit_the_data_are_config_errors(demo_files):
    with pytest.raises(ConfigError, match="data.augment.ops: mention cannot augment text data"):
        augment(read_file(demo_files.intents), 1.0, ops=["mention"])
    with pytest.raises(ConfigError, match="data.augment.ops: swap, delete cannot augment tokens data"):
        augment(read_file(demo_files.ner), 1.0, ops=["swap", "delete"])


def test_typo_is_one_slip_that_keeps_the_first_letter():
    import random

    rng = random.Random(0)
    for word in ["refund", "payment", "Berlin", "card"] * 20:
        slipped = typo(word, rng)
        assert slipped[0] == word[0]
        assert abs(len(slipped) - len(word)) <= 1
    assert typo("abc", rng) == "abc"  # too short to slip


def test_training_splits_augment_only_train(demo_files):
    config = DataConfig(train=demo_files.intents, augment={"factor": 1.0, "seed": 7})
    plain = load_splits(DataConfig(train=demo_files.intents))
    splits = load_splits(config)
    assert splits["dev"].examples == plain["dev"].examples and splits["test"].examples == plain["test"].examples
    assert len(splits["train"]) == 2 * len(plain["train"])
    assert splits["train"].examples[: len(plain["train"])] == plain["train"].examples
    report = quality_report(splits)  # the report describes the user's own data
    assert report.splits["train"].examples == len(plain["train"])


def test_augment_config_validates_fields(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: classification\ndata: {augment: {factor: -1}}\n")
    with pytest.raises(ConfigError, match="data.augment.factor"):
        load_config(path)
    path.write_text("task: classification\ndata: {augment: {ops: [shout]}}\n")
    with pytest.raises(ConfigError, match="data.augment.ops"):
        load_config(path)


def test_cli_writes_a_readable_file(demo_files, tmp_path):
    out = tmp_path / "more.jsonl"
    result = CliRunner().invoke(app, ["data", "augment", str(demo_files.intents), "--out", str(out),
                                      "--factor", "0.5", "--ops", "typo"])
    assert result.exit_code == 0, result.output
    n = len(read_file(demo_files.intents))
    assert f"{n} examples + {round(0.5 * n)} augmented" in result.output
    written = read_file(out)
    assert len(written) == n + round(0.5 * n) and written.kind is DataKind.TEXT
    assert json.loads(out.read_text().splitlines()[0])["text"] == read_file(demo_files.intents).examples[0].text
    bad = CliRunner().invoke(app, ["data", "augment", str(demo_files.intents), "--out", str(out), "--ops", "mention"])
    assert bad.exit_code != 0 and "mention cannot augment text data" in bad.output
