"""The drift tests on samples whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from goldmine.monitoring.statistics import js_divergence, length_shift, mmd_permutation_test, words


def test_mmd_finds_a_shift_and_not_a_resample():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 16))
    same = rng.normal(size=(150, 16))
    shifted = rng.normal(size=(150, 16)) + np.r_[0.8, np.zeros(15)]  # one direction moved by 0.8 sd
    drift = mmd_permutation_test(reference, shifted, permutations=200)
    assert drift.p_value < 0.01 and drift.mmd2 > 0
    calm = mmd_permutation_test(reference, same, permutations=200)
    assert calm.p_value > 0.05
    assert calm.mmd2 < drift.mmd2
    assert (drift.reference_size, drift.live_size) == (200, 150)


def test_mmd_p_value_resolution_and_small_samples():
    rng = np.random.default_rng(1)
    result = mmd_permutation_test(rng.normal(size=(20, 4)), rng.normal(size=(20, 4)) + 5, permutations=50)
    assert result.p_value == pytest.approx(1 / 51)  # no permutation reaches it: the smallest p-value there is
    with pytest.raises(ValueError, match="at least 2 vectors"):
        mmd_permutation_test(rng.normal(size=(20, 4)), rng.normal(size=(1, 4)))


def test_length_shift_and_label_divergence():
    short = np.full(300, 6) + np.arange(300) % 4
    shift = length_shift(short, short * 10)
    assert shift["ks_statistic"] == 1.0 and shift["p_value"] < 1e-6
    assert shift["median_live"] > shift["median_reference"]
    assert length_shift(short, short)["ks_statistic"] == 0.0
    assert js_divergence([10, 0], [0, 5]) == pytest.approx(1.0)
    assert js_divergence([3, 1], [30, 10]) == pytest.approx(0.0)
    assert js_divergence([0, 0], [1, 1]) == 0.0


def test_words_are_lowercased_word_runs():
    assert words("Refund my CARD, order #A-1234!") == ["refund", "my", "card", "order", "a", "1234"]
