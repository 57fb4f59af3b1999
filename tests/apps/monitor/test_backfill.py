"""Backfill: locally and on Ray Data (a local Ray instance, 2 actors) the same items, aggregates and alerts."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from goldmine.apps.base import load_app_config
from goldmine.apps.monitor import api, demo
from goldmine.apps.monitor.store import MonitorAggregate, MonitorAlert, MonitorItem
from goldmine.serving.db import open_database
from goldmine.serving.registry import register
from goldmine.serving.settings import load_settings


def state(db):
    with db.session() as s:
        return ({i.item_id: (i.label, i.companies) for i in s.scalars(select(MonitorItem))},
                {(a.company, a.window, a.bucket_start): (a.items, a.negative, a.positive)
                 for a in s.scalars(select(MonitorAggregate))},
                sorted(a.id for a in s.scalars(select(MonitorAlert))))


@pytest.mark.ray
def test_ray_backfill_stores_what_a_local_one_stores(db, registered, write_config, sentiment_run, tmp_path):
    stream = demo.write_stream(tmp_path / "history.jsonl", days=10)
    config = write_config(backfill={"engine": "ray", "workers": 2, "batch_size": 64, "chunk_items": 1000})
    on_ray = api.backfill(api.open_monitor(load_app_config(config, "monitor"), db), stream)
    assert on_ray.items == on_ray.stored > 150 and len(on_ray.issues) == 2 and on_ray.pending == 0
    local_settings = load_settings(data_dir=tmp_path / "local", preload=False)
    local_db = open_database(local_settings)
    register(local_db, local_settings.registry_dir, "fin-sentiment", sentiment_run, "acme")
    local = api.backfill(api.open_monitor(load_app_config(config, "monitor"), local_db), stream, engine="local")
    assert state(db) == state(local_db) and [a.id for a in on_ray.alerts] == [a.id for a in local.alerts]
    local_db.dispose()
    again = api.backfill(api.open_monitor(load_app_config(config, "monitor"), db), stream)  # resumed: at the end
    assert (again.records, again.stored) == (0, 0)
