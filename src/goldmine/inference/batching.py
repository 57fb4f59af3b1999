"""Length-sorted batching: texts of similar length share a batch, so padding costs little."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def length_sorted_batches(features: Sequence[dict], tokenizer, batch_size: int,
                          return_tensors: str = "pt") -> Iterator[tuple[np.ndarray, dict]]:
    """Yield (original indices, padded tensors) with batches in order of increasing length.

    `return_tensors` is "pt" (torch) or "np" (onnxruntime)."""
    order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        rows = [{k: features[i][k] for k in MODEL_INPUTS if k in features[i]} for i in idx]
        yield idx, tokenizer.pad(rows, return_tensors=return_tensors)
