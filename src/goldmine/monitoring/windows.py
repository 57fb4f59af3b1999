"""Rolling windows of what a served model version is asked and answers, and the `DriftMonitor` that keeps them.

The predict route calls `DriftMonitor.observe` after each answered call. That call only counts (labels, scores,
out-of-scope answers, word counts, out-of-vocabulary words) and keeps a reservoir sample of texts, so it costs
microseconds per text on the event loop. When a window has `drift.window_texts` texts it is swapped for a new one
and closed in a thread: the sample is embedded by the same loaded model (no second copy in memory), the drift tests
run against the version's `DriftReference`, the figures are written to `drift_windows` and set as Prometheus
gauges, and the sample is dropped. The window's texts never reach the database, a log or a metric.

Each server process keeps its own windows (a replica's windows are a sample of the traffic, which is what a drift
test needs); the database holds every replica's, each row with the window it saw.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from goldmine.monitoring.reference import DriftReference, oov_share
from goldmine.monitoring.statistics import js_divergence, length_shift, mmd_permutation_test, words

log = logging.getLogger(__name__)
CONFIDENCE_BINS = 10


@dataclass
class WindowReport:
    """A closed window's figures: what is stored (as JSON) and drawn by `goldmine drift report`."""

    texts: int
    label_counts: dict[str, int]
    out_of_scope_rate: float
    mean_confidence: float | None
    confidence_histogram: list[int]  # CONFIDENCE_BINS equal bins over [0, 1]
    median_words: float
    input_tests: bool  # False: the version has no drift reference (counts only)
    mmd2: float | None = None
    mmd_p_value: float | None = None
    length: dict[str, float] | None = None
    oov_rate: float | None = None
    oov_rate_training: float | None = None
    label_js_divergence: float | None = None  # answered label shares vs training shares, in bits
    alarm: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class Window:
    """What one version saw since its window opened; `sample` holds texts in memory until the window closes."""

    tenant: str
    model: str
    version: str
    sample_size: int
    started_at: datetime
    texts: int = 0
    label_counts: Counter = field(default_factory=Counter)
    out_of_scope: int = 0
    scores: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    words: list[list[str]] = field(default_factory=list)  # of the sampled texts only: the OOV share reads them
    sample: list[str] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def observe(self, text: str, prediction: dict[str, Any]) -> None:
        self.texts += 1
        tokens = words(text)
        self.lengths.append(len(tokens))
        if "label" in prediction:
            self.label_counts[str(prediction.get("closest_label", prediction["label"]))] += 1
            if isinstance(prediction.get("score"), int | float):
                self.scores.append(float(prediction["score"]))
        self.out_of_scope += bool(prediction.get("out_of_scope"))
        # reservoir sampling: every text of the window is equally likely to be in the sample
        if len(self.sample) < self.sample_size:
            self.sample.append(text)
            self.words.append(tokens)
        else:
            slot = self.rng.randrange(self.texts)
            if slot < self.sample_size:
                self.sample[slot], self.words[slot] = text, tokens

    def close(self, model, reference: DriftReference | None, permutations: int, alarm_p_value: float
              ) -> WindowReport:
        """The window's figures; embeds the sample with `model` when there is a reference to test against."""
        scores = np.asarray(self.scores)
        report = WindowReport(
            texts=self.texts, label_counts=dict(self.label_counts),
            out_of_scope_rate=self.out_of_scope / self.texts if self.texts else 0.0,
            mean_confidence=float(scores.mean()) if len(scores) else None,
            confidence_histogram=np.histogram(scores, bins=CONFIDENCE_BINS, range=(0.0, 1.0))[0].tolist(),
            median_words=float(np.median(self.lengths)) if self.lengths else 0.0,
            input_tests=reference is not None and len(self.sample) >= 2)
        if report.input_tests:
            mmd = mmd_permutation_test(reference.embeddings, model.embed(self.sample), permutations)
            report.mmd2, report.mmd_p_value = mmd.mmd2, mmd.p_value
            report.length = length_shift(reference.lengths, np.asarray(self.lengths))
            report.oov_rate, report.oov_rate_training = oov_share(self.words, reference.vocabulary), reference.oov_rate
            answered = np.asarray([self.label_counts.get(name, 0) for name in reference.labels], dtype=np.float64)
            report.label_js_divergence = js_divergence(answered, reference.label_shares)
            report.alarm = mmd.p_value < alarm_p_value
        self.sample.clear()  # the texts go now: only the figures above outlive the window
        self.words.clear()
        return report


class DriftMonitor:
    """Per-version windows of one server process, fed by the predict route (see the module docstring)."""

    def __init__(self, settings, metrics, db):
        self.settings, self.metrics, self.db = settings, metrics, db
        self.windows: dict[tuple[str, str], Window] = {}
        self.references: dict[str, DriftReference | None] = {}  # by version path
        self.models: dict[tuple[str, str], tuple[Any, str]] = {}  # (model, version) -> (loaded model, its path)
        self.closing: set[asyncio.Task] = set()
        self.lock = threading.Lock()

    def observe(self, tenant: str, name: str, version: str, path: str, model, texts: list[str],
                predictions: list[dict[str, Any]]) -> None:
        """Count an answered call; swap and close the version's window when it is full. Never raises: a
        monitoring fault is logged, and the call it watched is answered as usual."""
        if not self.settings.enabled:
            return
        try:
            self._observe(tenant, name, version, path, model, texts, predictions)
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("monitoring could not count a call of %s@%s", name, version)

    def _observe(self, tenant: str, name: str, version: str, path: str, model, texts: list[str],
                 predictions: list[dict[str, Any]]) -> None:
        key = (name, version)
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = self._new_window(tenant, name, version)
        self.models[key] = (model, path)
        for text, prediction in zip(texts, predictions, strict=True):
            self._count(name, version, prediction)
            window.observe(text, prediction)
        if window.texts >= self.settings.window_texts:
            self.windows[key] = self._new_window(tenant, name, version)
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.close, window, model, path))
            self.closing.add(task)
            task.add_done_callback(self.closing.discard)

    def _new_window(self, tenant: str, name: str, version: str) -> Window:
        from goldmine.serving.db import utcnow

        return Window(tenant, name, version, self.settings.sample_texts, utcnow())

    def _count(self, name: str, version: str, prediction: dict[str, Any]) -> None:
        if "label" in prediction:
            self.metrics.predictions.labels(name, version, str(prediction["label"])).inc()
            if isinstance(prediction.get("score"), int | float):
                self.metrics.confidence.labels(name).observe(float(prediction["score"]))
        if prediction.get("out_of_scope"):
            self.metrics.out_of_scope.labels(name, version).inc()

    def reference(self, path: str) -> DriftReference | None:
        with self.lock:
            if path not in self.references:
                self.references[path] = DriftReference.load(path)
                if self.references[path] is None:
                    log.info("%s has no drift reference (%s): its windows are counted, not tested for input "
                             "drift; `goldmine drift reference` writes one", path, "drift_reference.npz")
            return self.references[path]

    def close(self, window: Window, model, path: str) -> WindowReport | None:
        """Test and store a full window (in a worker thread). A failure is logged: monitoring never fails a call."""
        from goldmine.serving.db import DriftWindow

        try:
            report = window.close(model, self.reference(path), self.settings.permutations,
                                  self.settings.alarm_p_value)
            with self.db.session() as session:
                session.add(DriftWindow(tenant_id=window.tenant, model_name=window.model, version=window.version,
                                        started_at=window.started_at, texts=report.texts, alarm=report.alarm,
                                        report_json=report.to_json()))
        except Exception:  # noqa: BLE001 - a monitoring failure must not reach a caller; it is logged
            log.exception("drift window of %s@%s could not be closed", window.model, window.version)
            return None
        self._export(window.model, window.version, report)
        if report.alarm:
            log.warning("input drift: %s@%s, MMD p-value %.4f over %d texts (alarm below %s)", window.model,
                        window.version, report.mmd_p_value, report.texts, self.settings.alarm_p_value)
        return report

    def _export(self, name: str, version: str, report: WindowReport) -> None:
        m = self.metrics
        m.drift_windows.labels(name, version).inc()
        if report.input_tests:
            m.drift_p_value.labels(name, version).set(report.mmd_p_value)
            m.drift_mmd.labels(name, version).set(report.mmd2)
            m.drift_oov_rate.labels(name, version).set(report.oov_rate - report.oov_rate_training)
            m.drift_length_ks.labels(name, version).set(report.length["ks_statistic"])
            m.drift_alarm.labels(name, version).set(int(report.alarm))

    async def flush(self, min_texts: int = 50) -> None:
        """Close every window with at least `min_texts` texts (shutdown), and wait for windows closing."""
        for key, window in list(self.windows.items()):
            if window.texts >= min_texts:
                model, path = self.models[key]
                del self.windows[key]
                await asyncio.to_thread(self.close, window, model, path)
        if self.closing:
            await asyncio.gather(*self.closing, return_exceptions=True)
