"""Load the splits a run needs: given files, or one file split reproducibly (training, and export's parity sample)."""

from __future__ import annotations

import logging
from pathlib import Path

from goldmine.config import AugmentConfig, DataConfig
from goldmine.data.augment import augment
from goldmine.data.readers import ReadOptions, read_file
from goldmine.data.schema import LabeledData
from goldmine.data.split import split_data
from goldmine.data.validate import check_splits
from goldmine.errors import ConfigError

log = logging.getLogger(__name__)


def read_options(config: DataConfig, multi_label: bool | None = None) -> ReadOptions:
    return ReadOptions(
        text_column=config.text_column,
        text_b_column=config.text_b_column,
        label_column=config.label_column,
        label_separator=config.label_separator,
        multi_label=multi_label,
        scheme=config.scheme,
        strict=config.strict,
    )


def load_splits(config: DataConfig, multi_label: bool | None = None,
                out_of_scope_label: str | None = None) -> dict[str, LabeledData]:
    """train/dev/test. Missing dev or test are split off train (stratified, seeded) and say so in the path.
    `out_of_scope_label` may label dev and test examples though train has no such class."""
    if config.train is None:
        raise ConfigError("data.train: no training file given (--train FILE or data.train in the config)")
    options = read_options(config, multi_label)
    train = read_file(config.train, options)
    dev = read_file(config.dev, options) if config.dev else None
    test = read_file(config.test, options) if config.test else None
    if dev is None or test is None:
        share_train, share_dev, share_test = config.split
        if dev is not None:  # only test is missing: split train into train + test
            share_dev, share_train = 0.0, share_train + share_dev
        if test is not None:
            share_test, share_train = 0.0, share_train + share_test
        part_train, part_dev, part_test = split_data(train, (share_train, share_dev, share_test), config.split_seed)
        train = part_train
        dev = dev or _named(part_dev, "dev")
        test = test or _named(part_test, "test")
    check_splits(train, {"dev": dev, "test": test}, also_allowed={out_of_scope_label} - {None})
    if config.augment.factor:  # after the split and the leakage check: dev and test stay real
        real = len(train)
        train = augment(train, config.augment.factor, config.augment.ops, config.augment.seed)
        log.info("data: augmented train with %d edited copies (%d real examples)", len(train) - real, real)
    return {"train": train, "dev": dev, "test": test}


def _named(data: LabeledData, split: str) -> LabeledData:
    data.path = f"{data.path}[{split} split]"
    return data


def run_splits(run_dir: Path, multi_label: bool | None = None) -> dict[str, LabeledData]:
    """The train/dev/test splits a run was trained and tested on: the files its `config.yaml` names, cut as training
    cut them (same shares, same seed), without the augmented copies training adds (they are made again)."""
    from goldmine.config import load_config

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no config.yaml naming its data")
    config = load_config(path)
    return load_splits(config.data.model_copy(update={"augment": AugmentConfig()}), multi_label,
                       out_of_scope_label=config.out_of_scope.label)
