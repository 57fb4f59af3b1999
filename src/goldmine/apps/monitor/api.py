"""The monitor's Python API, one function per CLI command: ingest a stream, deliver alerts, backfill a history,
status, report.

    from goldmine.apps.base import load_app_config
    from goldmine.apps.monitor import api as monitor
    config = load_app_config("configs/apps/monitor.yaml", "monitor")
    run = monitor.open_monitor(config, db)             # resolves and loads the models the config names
    report = monitor.ingest(run, "headlines.csv")      # resumes where the last run stopped
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import func, select

from goldmine.apps.base import resolve_models
from goldmine.apps.monitor.config import MonitorConfig
from goldmine.apps.monitor.delivery import DeliveryStats, Outbox
from goldmine.apps.monitor.items import Item, Record, StreamReader, detect_format
from goldmine.apps.monitor.pipeline import Alert, Monitor, Position
from goldmine.apps.monitor.store import MonitorAlert, MonitorDelivery, MonitorItem, MonitorSource
from goldmine.errors import ConfigError, DataIssue
from goldmine.serving.db import Database

log = logging.getLogger(__name__)
STDIN = "-"


class ModelRunner:
    """The config's models loaded in this process (the CLI's way; the server uses its shared pool instead)."""

    def __init__(self, config: MonitorConfig, db: Database, runtime: str = "auto", threads: int | None = None):
        from goldmine.inference.model import Model

        resolved = resolve_models(config, db)
        self.versions = {f: r.version for f, r in resolved.items()}
        self.paths = {f: r.path for f, r in resolved.items()}
        self.sentiment = Model.load(self.paths["models.sentiment"], runtime=runtime, threads=threads)
        check_tasks(config, self.sentiment.meta.task, "models.sentiment")
        self.polarity = config.polarity_of(list(self.sentiment.meta.label_names))
        self.ner = None
        if "models.ner" in self.paths:
            self.ner = Model.load(self.paths["models.ner"], runtime=runtime, threads=threads)
            check_tasks(config, self.ner.meta.task, "models.ner")

    def predict(self, texts: list[str]) -> tuple[list[dict], list[dict] | None]:
        sentiment = self.sentiment.predict(texts)
        return sentiment, (self.ner.predict(texts) if self.ner is not None else None)


def check_tasks(config: MonitorConfig, task: str, field_name: str) -> None:
    wanted = "ner" if field_name == "models.ner" else "classification"
    if task != wanted:
        raise ConfigError(f"{config.where(field_name)}: {field_name} must be a {wanted} model; this one is {task}")


@dataclass
class MonitorRun:
    """A monitor ready to process items: its pipeline, models and outbox."""

    config: MonitorConfig
    db: Database
    monitor: Monitor
    runner: ModelRunner
    outbox: Outbox

    def process(self, items: list[Item], position: Position | None = None):
        sentiment, entities = self.runner.predict([i.text for i in items]) if items else ([], None)
        analysed = self.monitor.analyse(items, sentiment, self.runner.polarity, entities)
        return self.monitor.store(analysed, position)


def open_monitor(config: MonitorConfig, db: Database, runtime: str = "auto", threads: int | None = None,
                 senders: dict | None = None) -> MonitorRun:
    """Resolve and load the config's models, build the pipeline and the outbox (`senders`: by sink name, for
    tests; default: the configured sinks)."""
    return MonitorRun(config, db, Monitor(config, db), ModelRunner(config, db, runtime, threads),
                      Outbox(config, db, senders))


@dataclass
class IngestReport:
    source: str
    records: int = 0  # records read (items and malformed ones)
    items: int = 0  # well-formed items read
    stored: int = 0  # new items stored
    duplicates: int = 0  # items stored before (by id)
    issues: list[DataIssue] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    delivered: int = 0
    pending: int = 0  # alert deliveries still queued (a sink down: retried later)
    resumed_at_line: int = 0  # 0: read from the start
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


def _open_source(source: str | Path, stream: IO[bytes] | None):
    if stream is not None:
        return stream, False
    if str(source) == STDIN:
        return sys.stdin.buffer, False
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    return path.open("rb"), True


def source_key(source: str | Path) -> str:
    """How a file is known in `monitor_sources` (its resolved path); stdin has no position."""
    return STDIN if str(source) == STDIN else str(Path(source).resolve())


def records(run: MonitorRun, source: str | Path, fmt: str = "auto", stream: IO[bytes] | None = None,
            resume: bool = True, report: IngestReport | None = None):
    """The records of `source` from where the last committed batch of it ended (`resume`)."""
    key = source_key(source)
    fmt = detect_format(source if str(source) != STDIN else "stdin.jsonl", fmt)
    handle, own = _open_source(source, stream)
    offset = line = 0
    if resume and key != STDIN and (pos := run.monitor.position(key)) is not None:
        if Path(source).stat().st_size >= pos.offset:
            offset, line = pos.offset, pos.line
        else:
            log.warning("%s is shorter than when it was last read: reading it from the start", source)
    if report is not None:
        report.resumed_at_line = line
    try:
        yield from StreamReader(handle, "stdin" if key == STDIN else str(source), fmt, run.config.fields,
                                run.config.max_chars, offset, line)
    finally:
        if own:
            handle.close()


def _timed(records, seconds: float):
    """The records, with a None whenever `seconds` pass without one (the reading runs in a thread), so that a live
    stream that goes quiet has its partial batch analysed instead of held until more items come."""
    pipe: queue.Queue = queue.Queue(maxsize=4096)
    end = object()

    def pump() -> None:
        try:
            for record in records:
                pipe.put(record)
        except BaseException as err:  # noqa: BLE001 - raised again in the consumer
            pipe.put(err)
        pipe.put(end)

    threading.Thread(target=pump, name="monitor-stdin", daemon=True).start()
    while True:
        try:
            record = pipe.get(timeout=seconds)
        except queue.Empty:
            yield None
            continue
        if record is end:
            return
        if isinstance(record, BaseException):
            raise record
        yield record


def ingest(run: MonitorRun, source: str | Path, fmt: str = "auto", stream: IO[bytes] | None = None,
           resume: bool = True, deliver: bool = True, batch_size: int | None = None,
           on_issue: Callable[[DataIssue], None] | None = None,
           on_batch: Callable[[IngestReport], None] | None = None) -> IngestReport:
    """Read a stream (a CSV/JSONL file, or `-` for stdin) batch by batch: analyse, store, and deliver the alerts
    raised after each batch. A malformed record is reported (`on_issue`, the log and the report) and skipped. A file
    is resumed after its last committed batch; items stored before are skipped by id in any case. From stdin (or a
    `stream`), a batch is also analysed once it has waited `flush_seconds` for more."""
    report = IngestReport(str(source))
    started = time.perf_counter()
    key = source_key(source)
    size = batch_size or run.config.batch_size
    batch: list[Item] = []
    issues = 0
    last: Record | None = None

    def flush() -> None:
        nonlocal batch, issues
        position = Position(key, last.end_offset, last.end_line, issues) if key != STDIN and last else None
        result = run.process(batch, position)
        report.stored += len(result.stored)
        report.duplicates += result.duplicates
        report.alerts += result.alerts
        batch, issues = [], 0
        if deliver and result.alerts:
            report.delivered += run.outbox.deliver_due().delivered
        if on_batch is not None:
            report.seconds = time.perf_counter() - started
            on_batch(report)

    reading = records(run, source, fmt, stream, resume, report)
    if key == STDIN or stream is not None:
        reading = _timed(reading, run.config.flush_seconds)
    for record in reading:
        if record is None:  # the stream went quiet
            if batch:
                flush()
            continue
        report.records += 1
        last = record
        if record.issue is not None:
            report.issues.append(record.issue)
            issues += 1
            log.warning("%s", record.issue)
            if on_issue is not None:
                on_issue(record.issue)
        elif record.item is not None:
            report.items += 1
            batch.append(record.item)
        if len(batch) >= size:
            flush()
    if batch or issues or last is not None:
        flush()
    if deliver:
        report.delivered += run.outbox.deliver_due().delivered
    report.pending = run.outbox.pending()
    report.seconds = time.perf_counter() - started
    return report


def deliver(run_or_outbox, watch: bool = False, until_empty: bool = False, timeout: float | None = None,
            sleep: Callable[[float], None] = time.sleep) -> DeliveryStats:
    """Send the alerts due now; with `watch`, keep going (every `delivery.poll_seconds`) until `timeout`, or until
    nothing is pending with `until_empty`."""
    outbox = run_or_outbox.outbox if isinstance(run_or_outbox, MonitorRun) else run_or_outbox
    total = DeliveryStats()
    deadline = time.monotonic() + timeout if timeout is not None else None
    while True:
        stats = outbox.deliver_due()
        total.delivered += stats.delivered
        total.failed_attempts += stats.failed_attempts
        total.given_up += stats.given_up
        total.pending = stats.pending
        if not watch or (until_empty and not stats.pending) or (deadline and time.monotonic() >= deadline):
            return total
        sleep(outbox.config.delivery.poll_seconds)


def backfill(run: MonitorRun, source: str | Path, fmt: str = "auto", engine: str | None = None,
             workers: int | None = None, on_batch: Callable[[IngestReport], None] | None = None) -> IngestReport:
    """Ingest a large history: in this process (engine local, the default), or with the sentiment (and NER) model
    replicated over Ray Data actors (engine ray: `backfill.workers` of them on `backfill.address`, else a local
    Ray instance). Either way the results are stored by this process in stream order, batch by batch and resumable,
    so both engines store the same items, aggregates and alerts. Alerts are delivered at the end."""
    engine = engine or run.config.backfill.engine
    if engine == "local":
        report = ingest(run, source, fmt, deliver=False, on_batch=on_batch)
    elif engine == "ray":
        from goldmine.apps.monitor.backfill import backfill_ray

        report = backfill_ray(run, source, fmt, workers or run.config.backfill.workers, on_batch)
    else:
        raise ConfigError(f"backfill engine must be local or ray, got {engine!r}")
    report.delivered += run.outbox.deliver_due().delivered
    report.pending = run.outbox.pending()
    return report


def status(db: Database, config: MonitorConfig) -> dict:
    """Items, companies, alerts and the outbox of the config's tenant; how far each file was read."""
    tenant = config.tenant
    with db.session() as session:
        items = session.scalar(select(func.count()).select_from(MonitorItem).where(MonitorItem.tenant_id == tenant))
        alerts = session.scalar(select(func.count()).select_from(MonitorAlert).where(MonitorAlert.tenant_id == tenant))
        outbox = dict(session.execute(select(MonitorDelivery.status, func.count()).where(
            MonitorDelivery.tenant_id == tenant).group_by(MonitorDelivery.status)).all())
        sources = [{"source": s.source, "line": s.line, "offset": s.offset, "items": s.items, "issues": s.issues,
                    "updated_at": s.updated_at.isoformat(timespec="seconds") + "Z"}
                   for s in session.scalars(select(MonitorSource).where(MonitorSource.tenant_id == tenant))]
    return {"tenant": tenant, "items": int(items or 0), "alerts": int(alerts or 0),
            "deliveries": {k: int(v) for k, v in outbox.items()}, "sources": sources}
