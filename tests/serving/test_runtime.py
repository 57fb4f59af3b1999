"""How many batches a loaded version runs at once, by runtime, when the settings leave it open."""

from __future__ import annotations

import pytest

from goldmine.serving import runtime
from goldmine.serving.runtime import compute_workers


@pytest.mark.parametrize(("name", "workers", "threads", "cores", "expected"), [
    ("onnx-int8", None, 1, 4, 4),  # default: one single-threaded pass per core
    ("onnx", None, 2, 4, 2),  # inference_threads 2: cores / 2
    ("onnx", None, 8, 4, 1),  # never below one
    ("torch", None, 1, 4, 4),  # torch alike: the app sets torch's pool to one thread (a wide one fights the loop)
    ("torch", None, 2, 4, 2),  # inference_threads 2 on torch: cores / 2
    ("mixed", None, 1, 4, 4),  # an ensemble over torch and onnx members
    ("torch", 3, None, 4, 3),  # an explicit setting wins
    ("onnx", 2, 1, 8, 2),
])
def test_compute_workers(monkeypatch, name, workers, threads, cores, expected):
    monkeypatch.setattr(runtime, "available_cores", lambda: cores)
    assert compute_workers(name, workers, threads) == expected
