"""What several benchmarks share: JSONL data files, a `goldmine.train` run timed apart from its evaluation, and a
`goldmine serve` subprocess waited for until it is ready.

A benchmark compares how long methods take to *build* a model; the test evaluation that `goldmine.train` runs at
the end (on a dev file as large as the benchmark's) is timed on its own, through the trainer's phase callbacks, so
that a method is not charged for the size of the data it is measured on.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    """`text` and `label` (as a string) of each row: the file a classification run trains on."""
    path.write_text("".join(json.dumps({"text": r["text"], "label": str(r["label"])}) + "\n" for r in rows))
    return path


def timed_train(settings: dict):
    """`goldmine.train` on a config built from `settings` (dotted overrides). Returns (the TrainResult, seconds to
    build the model, seconds of its test evaluation)."""
    import goldmine
    from goldmine.config import load_config
    from goldmine.training.callbacks import PhaseCallback

    class EvaluationTimer(PhaseCallback):
        seconds = 0.0

        @contextlib.contextmanager
        def phase(self, name, total=None):
            started = time.perf_counter()
            yield lambda: None
            if name == "test evaluation":
                EvaluationTimer.seconds += time.perf_counter() - started

    timer = EvaluationTimer()
    started = time.perf_counter()
    result = goldmine.train(load_config(None, settings), callbacks=[timer])
    wall = time.perf_counter() - started
    return result, wall - timer.seconds, timer.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, process, log_path: Path, seconds: float) -> None:
    """Poll `url`/readyz until the `goldmine serve` subprocess answers 200; RuntimeError with the end of its log
    when it exits first or `seconds` pass (a deadline: a loaded machine may take minutes to import and load)."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"goldmine serve did not start:\n{Path(log_path).read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
