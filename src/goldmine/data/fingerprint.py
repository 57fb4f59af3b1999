"""A data fingerprint: which bytes a model was trained and measured on, so results can be traced."""

from __future__ import annotations

import hashlib
from pathlib import Path

from goldmine.data.schema import LabeledData


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(splits: dict[str, LabeledData], files: dict[str, str | None]) -> dict:
    """Per split: source file hash, example count and label counts; plus one hash over the lot."""
    out: dict = {"splits": {}}
    for name, data in splits.items():
        source = files.get(name)
        out["splits"][name] = {
            "file": source,
            "sha256": file_sha256(source) if source else None,
            "examples": len(data),
            "label_counts": dict(sorted(data.label_counts().items())),
        }
    combined = hashlib.sha256(repr(sorted((k, v["sha256"], v["examples"]) for k, v in out["splits"].items())).encode())
    out["sha256"] = combined.hexdigest()
    return out
