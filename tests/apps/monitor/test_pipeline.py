"""One batch through analyse + store, with hand-written predictions: aggregates, duplicates, alerts raised once per
window whatever the batching, one outbox row per sink, and the input position committed with the batch."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from goldmine.apps.monitor.config import MonitorConfig
from goldmine.apps.monitor.items import Item
from goldmine.apps.monitor.pipeline import Monitor, Position
from goldmine.apps.monitor.store import MonitorAggregate, MonitorAlert, MonitorDelivery, MonitorItem

POLARITY = {"negative": "negative", "neutral": "neutral", "positive": "positive"}
DAY = datetime(2026, 3, 2)


def config(**fields) -> MonitorConfig:
    return MonitorConfig.model_validate({
        "app": "monitor", "tenant": "acme", "models": {"sentiment": {"name": "fin-sentiment"}},
        "companies": {"Tailspin Air": {"tickers": ["TAIL"], "aliases": ["Tailspin"]},
                      "Contoso Motors": {"tickers": ["CTSO"]}},
        "rules": [{"name": "burst", "kind": "negative_share", "window": "1d", "threshold": 0.6, "min_items": 4}],
        "sinks": [{"type": "log"}, {"type": "log", "name": "audit"}], **fields})


def prediction(label: str) -> dict:
    scores = {"negative": 0.1, "neutral": 0.1, "positive": 0.1}
    scores[label] = 0.8
    return {"label": label, "score": 0.8, "scores": scores}


def items(labels: str, day: int = 0, company: str = "Tailspin", start: int = 0) -> list[tuple[Item, dict]]:
    """One item per letter (n/u/p: negative, neutral, positive), an hour apart on `day`."""
    names = {"n": "negative", "u": "neutral", "p": "positive"}
    return [(Item(f"{company}-{day}-{start + i}", DAY + timedelta(days=day, hours=i), f"{company} news {start + i}"),
             prediction(names[c])) for i, c in enumerate(labels)]


def store(monitor: Monitor, pairs, position=None):
    analysed = monitor.analyse([i for i, _ in pairs], [p for _, p in pairs], POLARITY)
    return monitor.store(analysed, position)


def aggregates(db) -> dict:
    with db.session() as s:
        return {(r.company, r.window, r.bucket_start):
                (r.items, r.negative, r.neutral, r.positive, round(r.score_sum, 6))
                for r in s.scalars(select(MonitorAggregate))}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_aggregates_duplicates_and_alert_once_per_window(db):
    monitor = Monitor(config(), db)
    first = store(monitor, items("nnp") + items("up", day=1, company="$CTSO"))
    assert len(first.stored) == 5 and first.duplicates == 0 and first.alerts == []
    assert [a.companies for a in first.stored][-1] == ["Contoso Motors"]  # a cashtag of a ticker in the table
    again = store(monitor, items("nnp"))  # the same items once more: nothing counted twice
    assert (len(again.stored), again.duplicates) == (0, 3)
    burst = store(monitor, items("nn", start=3))  # fires at its first item: 3 of 4 negative
    [alert] = burst.alerts
    assert (alert.rule, alert.company, alert.window_start, alert.value) == ("burst", "Tailspin Air", DAY, 0.75)
    assert "3 of 4 items negative (75%)" in alert.message and alert.details["item"] == "Tailspin-0-3"
    assert store(monitor, items("n", start=5)).alerts == []  # same window: already fired
    assert aggregates(db)[("Tailspin Air", "1d", DAY)] == (6, 5, 0, 1, -2.8)  # 5 x -0.7 + 0.7
    with db.session() as s:
        assert s.scalar(select(MonitorItem).where(MonitorItem.item_id == "Tailspin-0-0")).label == "negative"
        assert {(d.alert_id, d.sink, d.status) for d in s.scalars(select(MonitorDelivery))} == {
            (alert.id, "log", "pending"), (alert.id, "audit", "pending")}


@pytest.mark.parametrize("batch", [1, 3, 7, 100])
def test_alerts_do_not_depend_on_batching(db, batch):
    """A share that crosses the threshold and falls back within one batch still fires, as it does item by item."""
    monitor = Monitor(config(), db)
    stream = items("nnnnpppp") + items("pnnnn", day=1)
    fired = []
    for i in range(0, len(stream), batch):
        fired += store(monitor, stream[i:i + batch]).alerts
    assert [(a.window_start, a.details["items"], a.details["negative"]) for a in fired] == [
        (DAY, 4, 4), (DAY + timedelta(days=1), 4, 3)]


def test_zscore_against_the_baseline(db):
    rule = {"name": "drop", "kind": "zscore", "window": "1d", "metric": "mean_score", "k": 2, "direction": "down",
            "baseline": 7, "min_baseline": 3, "min_items": 3}
    monitor = Monitor(config(rules=[rule]), db)
    for day, labels in enumerate(["pup", "upu", "ppu", "pu"]):
        assert store(monitor, items(labels, day=day)).alerts == []  # the baseline builds up: means 0.47, 0.23, ...
    [alert] = store(monitor, items("nnu", day=5)).alerts
    assert alert.rule == "drop" and alert.details["baseline_windows"] == 4 and alert.details["z"] <= -2
    assert "standard deviations below its baseline" in alert.message


def test_position_commits_with_the_batch_and_counts_issues(db):
    monitor = Monitor(config(), db)
    store(monitor, items("np"), Position("/data/news.csv", 120, 3, issues=1))
    store(monitor, [], Position("/data/news.csv", 180, 5, issues=2))  # only malformed lines since
    row = monitor.position("/data/news.csv")
    assert (row.offset, row.line, row.items, row.issues) == (180, 5, 2, 3)
    assert monitor.position("/data/other.csv") is None


def test_windows_of_rules_and_reports_are_aggregated(db):
    monitor = Monitor(config(windows=["1h", "7d"]), db)  # the rule adds 1d
    store(monitor, items("nu"))
    assert sorted({w for _, w, _ in aggregates(db)}) == ["1d", "1h", "7d"]
    week = datetime(2026, 2, 26)  # 7d windows start on the epoch's weekday (a Thursday)
    assert aggregates(db)[("Tailspin Air", "7d", week)][0] == 2


def test_tenants_are_apart(db):
    store(Monitor(config(), db), items("nnnn"))
    other = Monitor(config(tenant="globex"), db)
    result = store(other, items("nnnn"))  # same ids, another tenant: new items, its own alert
    assert len(result.stored) == 4 and len(result.alerts) == 1
    with db.session() as s:
        assert len({a.id for a in s.scalars(select(MonitorAlert))}) == 2
