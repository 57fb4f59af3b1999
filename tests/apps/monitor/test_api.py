"""The Python API end to end on the tiny sentiment model: ingest a file (malformed lines reported with their line
numbers, the rest analysed), resume, stdin, duplicates, status; and the config's model checked against the registry."""

from __future__ import annotations

import io
import json
import time
from datetime import datetime

import pytest
from sqlalchemy import func, select

from goldmine.apps.base import load_app_config
from goldmine.apps.monitor import api
from goldmine.apps.monitor.items import Item
from goldmine.apps.monitor.store import MonitorAggregate, MonitorItem
from goldmine.errors import ConfigError
from goldmine.serving.registry import register


def count(db, model=MonitorItem) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_ingest_a_file_reports_bad_lines_and_resumes(db, registered, write_config, headline_files):
    stream, _ = headline_files
    lines = stream.read_text().splitlines()
    run = api.open_monitor(load_app_config(write_config(), "monitor"), db)
    report = api.ingest(run, stream, batch_size=50)
    assert [str(i).split(":", 2)[1:] for i in report.issues] == [
        ["7", " not valid JSON: Unterminated string starting at (column 42); skipped"],
        ["40", " time: not a date or time (Invalid isoformat string: 'yesterday'); skipped"]]
    assert report.items == report.stored == len(lines) - 2 == count(db) and report.records == len(lines)
    assert report.alerts and report.pending == 0 and report.delivered == len(report.alerts)  # the log sink
    assert {a.company for a in report.alerts} >= {"Tailspin Air"}  # the scripted crisis
    with db.session() as s:  # every item counted once per company and window
        mentions = sum(len(json.loads(c)) for c in s.scalars(select(MonitorItem.companies)))
        assert s.scalar(select(func.sum(MonitorAggregate.items))) == mentions > 0
    again = api.ingest(run, stream)  # nothing new: the file is resumed at its end
    assert (again.records, again.items, again.resumed_at_line) == (0, 0, len(lines))
    everything = api.ingest(run, stream, resume=False)  # read again: every item a duplicate
    assert (everything.stored, everything.duplicates, everything.alerts) == (0, len(lines) - 2, [])
    status = api.status(db, run.config)
    assert status["items"] == len(lines) - 2 and status["sources"][0]["line"] == len(lines)
    assert status["sources"][0]["issues"] == 4  # the 2 malformed lines, read twice


def test_stdin_and_appended_lines(db, registered, write_config, tmp_path):
    run = api.open_monitor(load_app_config(write_config(), "monitor"), db)
    rows = [{"time": "2026-03-02T10:00:00Z", "text": f"Tailspin shares plunge {i}% after profit warning"}
            for i in range(3)]
    piped = io.BytesIO(("\n".join(json.dumps(r) for r in rows) + "\nnot json\n").encode())
    report = api.ingest(run, "-", stream=piped)
    assert report.stored == 3 and [str(i)[:8] for i in report.issues] == ["stdin:4:"]
    path = tmp_path / "live.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    assert api.ingest(run, path).duplicates == 1  # seen on stdin: same id
    with path.open("a") as fh:  # the file grows: only the new line is read
        fh.write(json.dumps({**rows[0], "text": "Contoso cuts outlook"}) + "\n")
    later = api.ingest(run, path)
    assert (later.records, later.stored, later.resumed_at_line) == (1, 1, 1)


def test_the_models_must_exist_and_fit(db, settings, registered, write_config, tiny_run):
    missing = load_app_config(write_config(models={"sentiment": {"name": "fin-sentiment", "version": "v2"}}))
    with pytest.raises(ConfigError, match="monitor.yaml:4: models.sentiment: model 'fin-sentiment' has no alias or "
                                          "version 'v2'"):
        api.open_monitor(missing, db)
    register(db, settings.registry_dir, "tickets", tiny_run("ner"), "acme")
    wrong = load_app_config(write_config(models={"sentiment": {"name": "tickets"}}))
    with pytest.raises(ConfigError, match="models.sentiment must be a classification model; this one is ner"):
        api.open_monitor(wrong, db)
    register(db, settings.registry_dir, "intents", tiny_run("classification"), "acme")
    unmapped = load_app_config(write_config(models={"sentiment": {"name": "intents"}}))
    with pytest.raises(ConfigError, match="labels .* have no polarity: map them in label_map"):
        api.open_monitor(unmapped, db)


def test_ner_model_adds_companies(db, settings, registered, write_config, tiny_run):
    register(db, settings.registry_dir, "company-ner", tiny_run("ner"), "acme")
    config = load_app_config(write_config(models={"sentiment": {"name": "fin-sentiment"},
                                                  "ner": {"name": "company-ner"}},
                                          ner_types=["ORG", "PER", "PRODUCT", "LOC"], companies={}))
    run = api.open_monitor(config, db)
    texts = ["Anna Schmidt from Acme in Berlin", "nintendo sued"]
    sentiment, entities = run.runner.predict(texts)
    assert len(entities) == 2 and all("entities" in e for e in entities)
    found = {e["text"] for es in entities for e in es["entities"]}
    items = [Item(str(i), datetime(2026, 3, 2), text) for i, text in enumerate(texts)]
    analysed = run.monitor.analyse(items, sentiment, run.runner.polarity, entities)
    expected = {" ".join(f.split()).strip(" .,;:'\"()") for f in found} - {""}
    assert {c for a in analysed for c in a.companies} == expected


def test_a_quiet_live_stream_is_analysed_without_waiting_for_a_full_batch(db, registered, write_config):
    import os
    import threading

    run = api.open_monitor(load_app_config(write_config(flush_seconds=0.2), "monitor"), db)
    read_end, write_end = os.pipe()
    reports = []
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb") as writer:
        worker = threading.Thread(target=lambda: reports.append(api.ingest(run, "-", stream=reader, batch_size=64)))
        worker.start()
        writer.write(b'{"time": "2026-03-02T10:00:00Z", "text": "Tailspin cuts outlook"}\n')
        writer.flush()
        deadline = time.monotonic() + 20
        while count(db) == 0 and time.monotonic() < deadline:  # 1 of 64: stored after flush_seconds, not at EOF
            time.sleep(0.05)
        assert count(db) == 1 and worker.is_alive()
    worker.join(20)
    assert reports[0].stored == 1
