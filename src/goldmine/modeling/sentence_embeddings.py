"""Unit-length sentence embeddings of texts through a pooled classifier's own `embed` path.

Zero-shot prototypes and the few-shot head are made from these, so they see exactly what the saved model's head
reads at inference.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from goldmine.inference.batching import length_sorted_batches


@torch.inference_mode()
def embed(model: nn.Module, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Unit-length embeddings (N, H) of `texts` through `model.embed`, the very path the saved model classifies
    with, in length-sorted batches as inference cuts them."""
    was_training = model.training
    model.eval()
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    features = [{k: enc[k][i] for k in enc} for i in range(len(texts))]
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for idx, batch in length_sorted_batches(features, tokenizer, batch_size):
        out[idx] = model.embed(**batch).float().numpy()
    model.train(was_training)
    return out


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
