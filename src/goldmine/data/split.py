"""Reproducible, stratified train/dev/test splits of one labeled file.

A split must not change between runs (or machines), otherwise scores stop being comparable; and each split
must hold the labels in the same proportions, otherwise a small dev set can miss a class entirely. Everything
here is therefore ordered deterministically (no set or hash order) and the sampling is left to scikit-learn.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from goldmine.data.schema import DataKind, LabeledData, TokenExample
from goldmine.errors import ConfigError

NO_ENTITY = "none"
_MERGED = "\x00merged"  # stratum for classes too small to be kept apart in a tiny split


def split_data(
    data: LabeledData, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 13
) -> tuple[LabeledData, LabeledData, LabeledData]:
    """Split `data` into (train, dev, test), stratified by label, identical for the same input and seed.

    Classes with fewer members than there are non-empty splits cannot appear in every split, so they go to
    train (where the model can at least learn them) and the rest is stratified. Examples keep their original
    order within each split so written files diff nicely.
    """
    _check_ratios(ratios)
    n = len(data)
    n_test = min(n, _share(n, ratios[2]))
    n_dev = min(n - n_test, _share(n, ratios[1]))
    n_splits = sum(size > 0 for size in (n - n_test - n_dev, n_dev, n_test))

    keys = _strata(data, min_count=n_splits)
    counts = Counter(keys)
    rare = [i for i, key in enumerate(keys) if counts[key] < n_splits]
    pool = [i for i, key in enumerate(keys) if counts[key] >= n_splits]

    rest, test = _cut(pool, [keys[i] for i in pool], n_test, seed)
    train, dev = _cut(rest, [keys[i] for i in rest], n_dev, seed)
    train = rare + train
    return tuple(data.subset(sorted(part)) for part in (train, dev, test))  # type: ignore[return-value]


def _strata(data: LabeledData, min_count: int) -> list[str]:
    """The stratification key of every example: label, label combination, or dominant entity type.

    A label combination seen fewer than `min_count` times cannot reach every split, so such examples are
    stratified by their rarest label instead, which keeps rare labels spread over the splits.
    """
    if data.kind is DataKind.TOKENS:
        return [_dominant_entity(ex) for ex in data.examples]
    if not data.multi_label:
        return [ex.labels[0] if ex.labels else "" for ex in data.examples]
    combos = [json.dumps(sorted(ex.labels)) for ex in data.examples]
    combo_counts = Counter(combos)
    label_counts = data.label_counts()
    keys = []
    for ex, combo in zip(data.examples, combos, strict=True):
        if combo_counts[combo] >= min_count or not ex.labels:
            keys.append(combo)
        else:
            rarest = min(ex.labels, key=lambda label: (label_counts[label], label))
            keys.append(json.dumps([rarest]))
    return keys


def _dominant_entity(example: TokenExample) -> str:
    """The most frequent entity type of a sentence (ties broken by name), so NER splits balance entity types."""
    types = [tag[2:] for tag in example.tags if tag.startswith("B-")]
    if len(types) <= 1:
        return types[0] if types else NO_ENTITY
    counts = Counter(types)
    return min(counts, key=lambda t: (-counts[t], t))


def _check_ratios(ratios: Sequence[float]) -> None:
    try:
        values = [float(r) for r in ratios]
    except (TypeError, ValueError):
        values = []
    valid = len(values) == 3 and all(r >= 0 for r in values)  # `r >= 0` also rejects NaN
    if not valid or not math.isclose(sum(values), 1.0, rel_tol=0.0, abs_tol=1e-6):
        raise ConfigError(f"split: ratios must be three numbers >= 0 that sum to 1 (train, dev, test), got {ratios}")


def _share(n: int, ratio: float) -> int:
    """Round half up, so sizes do not depend on banker's rounding."""
    return math.floor(n * ratio + 0.5)


def _cut(indices: list[int], keys: list[str], n_take: int, seed: int) -> tuple[list[int], list[int]]:
    """Split `indices` into (keep, take) with `n_take` taken, stratified by `keys` as far as sizes allow.

    Keys with a single member cannot be stratified and stay in `keep`. When the smaller side is too small to
    hold every class, the smallest classes are merged into one stratum instead of giving up stratification.
    """
    if n_take >= len(indices):
        return [], list(indices)
    counts = Counter(keys)
    forced = [i for i, key in zip(indices, keys, strict=True) if counts[key] < 2]
    pool = [(i, key) for i, key in zip(indices, keys, strict=True) if counts[key] >= 2]
    n_take = min(n_take, len(pool))
    if n_take == 0:
        return list(indices), []
    if n_take == len(pool):
        return forced, [i for i, _ in pool]

    pool_counts = Counter(key for _, key in pool)
    room = min(n_take, len(pool) - n_take)
    pool_keys = [key for _, key in pool]
    if len(pool_counts) > room:
        kept = {key for key, _ in sorted(pool_counts.items(), key=lambda kv: (-kv[1], kv[0]))[: room - 1]}
        pool_keys = [key if key in kept else _MERGED for key in pool_keys]
    keep, take = train_test_split(
        np.array([i for i, _ in pool]), test_size=n_take, random_state=seed, shuffle=True, stratify=np.array(pool_keys)
    )
    return forced + keep.tolist(), take.tolist()
