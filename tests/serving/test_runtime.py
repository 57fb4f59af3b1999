"""How many batches a loaded version runs at once, by runtime, when the settings leave it open."""

from __future__ import annotations

import pytest

from goldmine.serving import runtime
from goldmine.serving.runtime import compute_workers


@pytest.mark.parametrize(("workers", "threads", "cores", "expected"), [
    (None, 1, 4, 4),  # default: one single-threaded pass per core (onnxruntime, torch and ensembles alike)
    (None, 2, 4, 2),  # inference_threads 2: cores / 2
    (None, 8, 4, 1),  # never below one
    (3, None, 4, 3),  # an explicit setting wins
    (2, 1, 8, 2),
])
def test_compute_workers(monkeypatch, workers, threads, cores, expected):
    monkeypatch.setattr(runtime, "available_cores", lambda: cores)
    assert compute_workers(workers, threads) == expected
