"""Backfill on Ray Data: the models run on `workers` Ray actors (`map_batches` with an actor pool, one CPU and one
model replica each); reading, company matching, aggregation, alerts and the database stay in this process.

The history is read in rounds of `backfill.chunk_items` items. Each round's texts go through Ray Data; the
predictions come back in stream order and are stored exactly as a local ingest stores them (batches of
`batch_size`, each with its input position), so a backfill killed mid-way resumes after its last stored batch, and
the two engines store the same results. With `backfill.address` unset, a local Ray instance is started (and shut
down after); with an address, the cluster's nodes need goldmine and read the model from the registry path, so
the registry must be on storage they share.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from goldmine.apps.monitor.items import Record

log = logging.getLogger(__name__)


class _Predictor:
    """A Ray actor: loads the models once, then predicts batches of texts."""

    def __init__(self, sentiment: str, ner: str | None):
        import torch

        from goldmine.inference.model import Model

        torch.set_num_threads(1)
        self.sentiment = Model.load(sentiment, threads=1)
        self.ner = Model.load(ner, threads=1) if ner else None

    def __call__(self, batch: dict) -> dict:
        texts = [str(t) for t in batch["text"]]
        out = {"row": batch["row"], "sentiment": [json.dumps(p) for p in self.sentiment.predict(texts)]}
        if self.ner is not None:
            out["ner"] = [json.dumps(p) for p in self.ner.predict(texts)]
        return out


def predict_on_ray(texts: list[str], sentiment: str, ner: str | None, workers: int,
                   batch_size: int) -> tuple[list[dict], list[dict] | None]:
    """Predictions for `texts` (in their order) from `workers` actors."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller reports progress (on_batch); Ray's bars flood stderr
    blocks = max(workers, -(-len(texts) // batch_size))  # about one batch per block: even work for the actors
    dataset = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)], override_num_blocks=blocks)
    predicted = dataset.map_batches(_Predictor, fn_constructor_kwargs={"sentiment": sentiment, "ner": ner},
                                    batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=workers),
                                    num_cpus=1, batch_format="numpy")
    rows = sorted(predicted.take_all(), key=lambda r: int(r["row"]))
    if len(rows) != len(texts):
        raise RuntimeError(f"Ray returned {len(rows)} predictions for {len(texts)} texts")
    sentiment_out = [json.loads(r["sentiment"]) for r in rows]
    return sentiment_out, ([json.loads(r["ner"]) for r in rows] if ner else None)


def _started_ray(address: str | None, workers: int) -> bool:
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return True


def backfill_ray(run, source: str | Path, fmt: str, workers: int,
                 on_batch: Callable | None = None):
    """`api.backfill` with engine ray (see the module docstring)."""
    import ray

    from goldmine.apps.monitor.api import IngestReport, records, source_key
    from goldmine.apps.monitor.pipeline import Position

    config = run.config
    report = IngestReport(str(source))
    started = time.perf_counter()
    key = source_key(source)
    own = _started_ray(config.backfill.address, workers)
    try:
        chunk: list[Record] = []

        def flush() -> None:
            items = [r.item for r in chunk if r.item is not None]
            sentiment, entities = predict_on_ray([i.text for i in items], run.runner.paths["models.sentiment"],
                                                 run.runner.paths.get("models.ner"), workers,
                                                 config.backfill.batch_size) if items else ([], None)
            analysed = iter(run.monitor.analyse(items, sentiment, run.runner.polarity, entities))
            batch, issues = [], 0
            for i, record in enumerate(chunk):
                if record.item is not None:
                    batch.append(next(analysed))
                elif record.issue is not None:
                    issues += 1
                if len(batch) >= config.batch_size or i == len(chunk) - 1:
                    position = Position(key, record.end_offset, record.end_line, issues) if key != "-" else None
                    result = run.monitor.store(batch, position)
                    report.stored += len(result.stored)
                    report.duplicates += result.duplicates
                    report.alerts += result.alerts
                    batch, issues = [], 0
            chunk.clear()
            report.seconds = time.perf_counter() - started
            if on_batch is not None:
                on_batch(report)

        for record in records(run, source, fmt, report=report):
            report.records += 1
            chunk.append(record)
            if record.issue is not None:
                report.issues.append(record.issue)
                log.warning("%s", record.issue)
            elif record.item is not None:
                report.items += 1
            if report.items and len(chunk) >= config.backfill.chunk_items:
                flush()
        if chunk:
            flush()
    finally:
        if own:
            ray.shutdown()
    report.seconds = time.perf_counter() - started
    return report
