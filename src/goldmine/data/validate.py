"""Checks across splits: a dev/test label the training set never had is an error, with a suggestion."""

from __future__ import annotations

from difflib import get_close_matches

from goldmine.data.schema import DataKind, LabeledData
from goldmine.errors import DataError, DataIssue


def check_splits(train: LabeledData, others: dict[str, LabeledData], also_allowed: set[str] | None = None) -> None:
    """Raise one DataError listing every record in `others` whose label (or entity type) train lacks (labels in
    `also_allowed`, such as an out-of-scope marker, excepted)."""
    issues: list[DataIssue] = []
    if len(train) == 0:
        raise DataError([DataIssue(train.path, 0, "training data is empty")])
    shown = sorted(train.label_names())
    known = set(shown) | (also_allowed or set())
    for name, data in others.items():
        if data.kind is not train.kind:
            reason = f"{name} holds {data.kind.value} data but train holds {train.kind.value}"
            issues.append(DataIssue(data.path, 0, reason))
            continue
        for ex in data.examples:
            values = ex.tags if data.kind is DataKind.TOKENS else ex.labels
            for offset, label in enumerate(values):
                if label in known:
                    continue
                hint = get_close_matches(label, shown, n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                where = offset if data.kind is DataKind.TOKENS else 0
                issues.append(DataIssue.at(ex.source, f"label {label!r} is not one of {shown}{suggestion}", where))
    if issues:
        raise DataError(issues, header="labels that the training data never had")
