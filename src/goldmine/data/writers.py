"""Write LabeledData back to disk in the reader's formats (used by `goldmine data split`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from goldmine.data.schema import DataKind, LabeledData


def write_data(data: LabeledData, path: Path) -> Path:
    """CSV/TSV/JSONL by suffix for texts and pairs; CoNLL (`token tag`, -DOCSTART- per document) for tokens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if data.kind is DataKind.TOKENS:
        lines: list[str] = []
        document = None
        for ex in data.examples:
            if ex.document != document:
                lines += ["-DOCSTART- O", ""]
                document = ex.document
            lines += [f"{tok} {tag}" for tok, tag in zip(ex.tokens, ex.tags, strict=True)] + [""]
        path.write_text("\n".join(lines), encoding="utf-8")
        return path
    pair = data.kind is DataKind.PAIR
    rows = []
    for ex in data.examples:
        label = list(ex.labels) if data.multi_label else ex.labels[0]
        row = {"text_a": ex.text, "text_b": ex.text_b} if pair else {"text": ex.text}
        rows.append({**row, "label": label})
    if path.suffix.lower() in (".csv", ".tsv"):
        # `a|b` cells mark a file as multi-label; with one label per row only JSON list cells (`["a"]`) can.
        as_lists = data.multi_label and all(len(ex.labels) < 2 for ex in data.examples)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["text", "label"],
                                    delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            writer.writeheader()
            for row in rows:
                if data.multi_label:
                    row["label"] = json.dumps(row["label"], ensure_ascii=False) if as_lists else "|".join(row["label"])
                writer.writerow(row)
    else:
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path
