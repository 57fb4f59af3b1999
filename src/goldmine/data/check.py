"""`goldmine data check` as a function: read every split, check them against each other, build the quality report.

The CLI and the datasets API (`goldmine.serving.datasets`) both call `check_files`, so an upload is validated
exactly as the command validates a file on disk: the same readers, the same cross-split checks, the same report.
"""

from __future__ import annotations

from pathlib import Path

from goldmine.data.readers import ReadOptions, read_file
from goldmine.data.report import QualityReport, quality_report
from goldmine.data.schema import LabeledData
from goldmine.data.validate import check_splits
from goldmine.errors import GoldmineError


def check_files(train: Path, dev: Path | None = None, test: Path | None = None,
                options: ReadOptions | None = None) -> dict[str, LabeledData]:
    """The splits read from their files; raises `DataError` with every problem as file:line: reason."""
    options = options or ReadOptions()
    splits = {"train": read_file(train, options)}
    for name, path in (("dev", dev), ("test", test)):
        if path:
            splits[name] = read_file(path, options)
    check_splits(splits["train"], {k: v for k, v in splits.items() if k != "train"})
    return splits


def report_of(splits: dict[str, LabeledData], max_length: int = 128) -> QualityReport:
    """The quality report `goldmine data check` prints (token lengths from the bundled tokenizer when installed)."""
    return quality_report(splits, bundled_token_counter(), max_length)


def bundled_token_counter():
    """Count tokens with the bundled tokenizer when it is installed (for the over-length check)."""
    try:
        from goldmine.modeling.backbone import load_tokenizer, resolve_base_model

        tokenizer = load_tokenizer(resolve_base_model("bundled"))
    except GoldmineError:
        return None
    return lambda texts: [len(ids) for ids in tokenizer(texts)["input_ids"]]
