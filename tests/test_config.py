"""load_config: defaults, YAML, typed dotted overrides, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldmine.config import TrainConfig, load_config
from goldmine.data.tags import Scheme
from goldmine.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SHIPPED_CONFIGS = sorted(p for p in {*CONFIG_DIR.glob("**/*.yaml"), *CONFIG_DIR.glob("**/*.yml")}
                         if "apps" not in p.relative_to(CONFIG_DIR).parts)  # app configs: tests/apps/test_base.py


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path=None, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


def test_defaults():
    cfg = load_config()
    assert cfg == TrainConfig()
    assert cfg.task == "classification"
    assert cfg.output_dir == Path("runs/model")
    assert cfg.data.train is None
    assert cfg.data.split == (0.8, 0.1, 0.1)
    assert cfg.data.split_seed == 13
    assert cfg.data.scheme is Scheme.AUTO
    assert cfg.data.label_separator == "|"
    assert cfg.model.name == "bundled"
    assert cfg.model.max_length == 128
    assert cfg.tuning.strategy == "full"
    assert cfg.tuning.lora.target_modules == ["query", "key", "value", "dense"]
    assert cfg.training.learning_rate == 1e-4
    assert cfg.training.eval_strategy == "epoch"
    assert cfg.training.early_stopping_patience == 3


def test_yaml_file_loads(tmp_path):
    path = write(
        tmp_path,
        """
task: ner
output_dir: runs/ner
data:
  train: data/train.conll
  dev: data/dev.conll
  scheme: iob1
  strict: true
  split: [0.7, 0.2, 0.1]
model:
  max_length: 256
tuning:
  strategy: lora
  lora:
    r: 8
    target_modules: [query, value]
training:
  learning_rate: 2e-5
  epochs: 5
  early_stopping_patience: null
""",
    )
    cfg = load_config(path)
    assert cfg.task == "ner"
    assert cfg.output_dir == Path("runs/ner")
    assert (cfg.data.train, cfg.data.dev, cfg.data.test) == (Path("data/train.conll"), Path("data/dev.conll"), None)
    assert cfg.data.scheme is Scheme.IOB1
    assert cfg.data.strict is True
    assert cfg.data.split == (0.7, 0.2, 0.1)
    assert cfg.model.max_length == 256
    assert (cfg.tuning.strategy, cfg.tuning.lora.r, cfg.tuning.lora.alpha) == ("lora", 8, 32)
    assert cfg.tuning.lora.target_modules == ["query", "value"]
    assert cfg.training.learning_rate == 2e-5
    assert cfg.training.epochs == 5.0
    assert cfg.training.early_stopping_patience is None


def test_empty_yaml_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing set\n")) == TrainConfig()


def test_string_overrides_are_typed():
    cfg = load_config(overrides={
        "training.learning_rate": "2e-5",
        "training.bf16": "true",
        "training.batch_size": "16",
        "training.epochs": "2",
        "training.max_steps": "-1",
        "training.early_stopping_patience": "null",
        "tuning.lora.target_modules": "[query, value]",
        "data.split": "[0.6, 0.2, 0.2]",
        "data.scheme": "bioes",
    })
    assert cfg.training.learning_rate == 2e-5
    assert isinstance(cfg.training.learning_rate, float)
    assert cfg.training.bf16 is True
    assert cfg.training.batch_size == 16
    assert cfg.training.epochs == 2.0
    assert cfg.training.max_steps == -1
    assert cfg.training.early_stopping_patience is None
    assert cfg.tuning.lora.target_modules == ["query", "value"]
    assert cfg.data.split == (0.6, 0.2, 0.2)
    assert cfg.data.scheme is Scheme.BIOES


def test_text_and_path_overrides_are_taken_verbatim():
    cfg = load_config(overrides={
        "data.label_separator": "|",  # YAML would read a lone `|` as an empty block scalar
        "data.text_column": "yes",  # ... and this as a boolean
        "data.train": "[draft] train.csv",  # ... and this as a broken flow sequence
        "output_dir": "2024",  # ... and this as an int
        "model.name": "1e5",
        "data.dev": "null",  # an optional path can still be unset
    })
    assert cfg.data.label_separator == "|"
    assert cfg.data.text_column == "yes"
    assert cfg.data.train == Path("[draft] train.csv")
    assert cfg.output_dir == Path("2024")
    assert cfg.model.name == "1e5"
    assert cfg.data.dev is None


def test_reloading_a_config_object_through_overrides_keeps_the_separator():
    """api.train(cfg, **overrides) feeds every field of a config back in as overrides."""
    cfg = load_config(overrides={"data.label_separator": ";", "task": "multilabel"})
    flat = {"data.label_separator": cfg.data.label_separator, "task": cfg.task, "training.epochs": "1"}
    again = load_config(overrides={**flat, "data.label_separator": "|"})
    assert (again.data.label_separator, again.task, again.training.epochs) == ("|", "multilabel", 1.0)


def test_non_string_overrides_pass_through_and_none_is_ignored():
    cfg = load_config(overrides={"training.epochs": 2, "training.seed": None, "data.train": Path("t.csv")})
    assert cfg.training.epochs == 2.0
    assert cfg.training.seed == 42
    assert cfg.data.train == Path("t.csv")


def test_overrides_win_over_the_file(tmp_path):
    path = write(tmp_path, "training:\n  epochs: 5\n  seed: 1\n")
    cfg = load_config(path, {"training.epochs": "1"})
    assert (cfg.training.epochs, cfg.training.seed) == (1.0, 1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"training.learning_rate": -1}, "training.learning_rate: Input should be greater than 0"),
        ({"training.learning_rate": "-1"}, "training.learning_rate: Input should be greater than 0"),
        ({"training.learning_rate": "fast"}, "training.learning_rate: Input should be a valid number"),
        ({"model.max_length": 3}, "model.max_length: Input should be greater than 8"),
        ({"training.lr": "1e-4"}, "training.lr: Extra inputs are not permitted"),
        ({"trainig.epochs": 1}, "trainig: Extra inputs are not permitted"),
        ({"model.pooling": "max"}, "model.pooling: Input should be 'mean', 'cls' or 'pooler'"),
        ({"training.eval_strategy": "x"}, "training.eval_strategy: Input should be 'epoch', 'steps' or 'none'"),
        ({"tuning.lora.r": 0}, "tuning.lora.r: Input should be greater than 0"),
        ({"data.split": [0.8, 0.2]}, "data.split.2: Field required"),
        ({"data.split": [0.5, 0.5, 0.5]}, "data.split must be three non-negative shares summing to 1"),
        ({"data.split": [1.2, -0.1, -0.1]}, "data.split must be three non-negative shares summing to 1"),
    ],
)
def test_invalid_values_name_the_field(overrides, message):
    text = config_error(overrides=overrides)
    assert text.startswith("invalid configuration\n  ")
    assert message in text


def test_unknown_tuning_strategy_suggests_the_closest():
    assert config_error(overrides={"tuning.strategy": "lorra"}) == (
        "tuning.strategy: unknown tuning strategy 'lorra'; choose one of ['fewshot', 'freeze', 'full', "
        "'label_likelihood', 'lora', 'zeroshot'] "
        "(did you mean 'lora'?)"
    )


def test_unknown_task_suggests_the_closest(tmp_path):
    path = write(tmp_path, "task: nre\n")
    assert config_error(path) == (
        f"{path}: task: unknown task 'nre'; choose one of ['causal_lm', 'classification', 'multilabel', 'ner', "
        "'retrieval'] "
        "(did you mean 'ner'?)"
    )


def test_every_invalid_field_is_reported_and_the_file_named(tmp_path):
    path = write(tmp_path, "training:\n  learning_rate: -1\n  batch_size: 0\nmodel:\n  max_length: 3\n")
    assert config_error(path) == (
        f"{path}: invalid configuration\n"
        "  model.max_length: Input should be greater than 8\n"
        "  training.learning_rate: Input should be greater than 0\n"
        "  training.batch_size: Input should be greater than 0"
    )


def test_override_below_a_value_that_is_not_a_section(tmp_path):
    path = write(tmp_path, "task: ner\n")
    assert config_error(path, {"task.name": "x"}) == "task.name: 'task' is not a section"


def test_missing_config_file(tmp_path):
    assert config_error(tmp_path / "nope.yaml") == f"config file not found: {tmp_path / 'nope.yaml'}"


def test_directory_is_not_a_config_file(tmp_path):
    assert config_error(tmp_path) == f"config file not found: {tmp_path}"


@pytest.mark.parametrize("text", ["training: [unclosed\n", "a: b: c\n", "training:\n  epochs: 1\n bad indent: 2\n"])
def test_invalid_yaml(tmp_path, text):
    path = write(tmp_path, text)
    assert config_error(path).startswith(f"{path}: not valid YAML: ")


def test_undecodable_config_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"task: \xff\xfe\n")
    assert config_error(path).startswith(f"{path}: not valid YAML: ")


@pytest.mark.parametrize("text", ["- task: ner\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    path = write(tmp_path, text)
    assert config_error(path) == f"{path}: expected a mapping at the top level"


@pytest.mark.parametrize("value", ["no", '"no"', "false", "none"])
def test_eval_strategy_no_means_none(tmp_path, value):
    cfg = load_config(write(tmp_path, f"training:\n  eval_strategy: {value}\n"))
    assert cfg.training.eval_strategy == "none"


def test_eval_strategy_no_as_override():
    assert load_config(overrides={"training.eval_strategy": "no"}).training.eval_strategy == "none"


def test_to_yaml_round_trips(tmp_path):
    cfg = load_config(overrides={
        "task": "ner",
        "output_dir": "runs/x",
        "data.train": "data/train.conll",
        "data.split": [0.7, 0.15, 0.15],
        "data.scheme": "bioes",
        "data.label_separator": "|",
        "tuning.strategy": "lora",
        "tuning.lora.target_modules": ["query"],
        "training.learning_rate": 3e-5,
        "training.eval_strategy": "none",
        "training.early_stopping_patience": None,
        "training.metric_for_best": "f1",
    })
    path = tmp_path / "saved.yaml"
    cfg.to_yaml(path)
    again = load_config(path)
    assert again == cfg
    assert again.data.train == Path("data/train.conll")
    assert again.training.eval_strategy == "none"
    assert again.data.label_separator == "|"


def test_default_to_yaml_round_trips(tmp_path):
    TrainConfig().to_yaml(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == TrainConfig()


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=[str(p.relative_to(CONFIG_DIR)) for p in SHIPPED_CONFIGS])
def test_shipped_configs_load(path):
    assert isinstance(load_config(path), TrainConfig)


def test_head_learning_rate_is_gone_but_configs_saved_with_it_unset_still_load(tmp_path):
    """It was declared and never read; run directories written before its removal hold `head_learning_rate: null`."""
    cfg = load_config(write(tmp_path, "training:\n  head_learning_rate: null\n  learning_rate: 0.0002\n"))
    assert cfg.training.learning_rate == 2e-4 and not hasattr(cfg.training, "head_learning_rate")
    assert "head_learning_rate: removed" in config_error(write(tmp_path, "training:\n  head_learning_rate: 0.001\n"))
