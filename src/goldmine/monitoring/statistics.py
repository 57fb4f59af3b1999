"""The drift tests, each on summaries a window can keep without keeping texts.

Why these: a sentence encoder's embedding is where a classifier's inputs live, so a shift of the embedding
distribution is the shift that matters (a maximum mean discrepancy between two samples, with a permutation test
for its p-value: no distributional assumption, and exact for small samples). Lengths and out-of-vocabulary words
are cheap, explainable signals beside it (a client that starts sending whole e-mails instead of one-line requests;
another language), and the label shares show a shift in what is asked even when each input looks familiar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscore runs): the unit of lengths and vocabulary."""
    return WORD.findall(text.lower())


@dataclass(frozen=True)
class MmdResult:
    mmd2: float  # unbiased squared MMD between the samples (can be slightly negative when they match)
    p_value: float  # share of label permutations with an MMD at least as large (with the +1 correction)
    bandwidth: float  # the RBF kernel's length scale: the median distance in the pooled sample
    reference_size: int
    live_size: int


def mmd_permutation_test(reference: np.ndarray, live: np.ndarray, permutations: int = 200,
                         seed: int = 0) -> MmdResult:
    """Two-sample test: are `live` embeddings drawn from the distribution of `reference`?

    RBF kernel with the median heuristic on the pooled sample; the kernel matrix is computed once and every
    permutation only re-indexes it, so 200 permutations of 256 + 200 vectors take milliseconds."""
    x, y = np.asarray(reference, dtype=np.float64), np.asarray(live, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"an MMD test needs at least 2 vectors per sample (got {len(x)} and {len(y)})")
    pooled = np.concatenate([x, y])
    squared = np.square(pooled).sum(1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * pooled @ pooled.T, 0.0)
    upper = distances[np.triu_indices(len(pooled), k=1)]
    median = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    kernel = np.exp(-distances / median)
    n = len(x)
    observed = _mmd2(kernel, np.arange(len(pooled)) < n)
    rng = np.random.default_rng(seed)
    at_least = 0
    for _ in range(permutations):
        mask = np.zeros(len(pooled), dtype=bool)
        mask[rng.choice(len(pooled), n, replace=False)] = True
        at_least += _mmd2(kernel, mask) >= observed
    return MmdResult(float(observed), (at_least + 1) / (permutations + 1), float(np.sqrt(median)), n, len(y))


def _mmd2(kernel: np.ndarray, in_x: np.ndarray) -> float:
    kxx, kyy, kxy = kernel[in_x][:, in_x], kernel[~in_x][:, ~in_x], kernel[in_x][:, ~in_x]
    n, m = len(kxx), len(kyy)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def length_shift(reference_lengths: np.ndarray, live_lengths: np.ndarray) -> dict[str, float]:
    """Kolmogorov-Smirnov between word-count distributions, with both medians for the report."""
    from scipy.stats import ks_2samp

    result = ks_2samp(reference_lengths, live_lengths)
    return {"ks_statistic": float(result.statistic), "p_value": float(result.pvalue),
            "median_reference": float(np.median(reference_lengths)), "median_live": float(np.median(live_lengths))}


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0: same shares, 1: disjoint) between two count or share vectors."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        inside = a > 0
        return float(np.sum(a[inside] * np.log2(a[inside] / m[inside])))

    return (kl(p) + kl(q)) / 2
