"""`/v1/apps/monitor/...` in-process: batches posted and analysed on the server's batchers, metered as app calls,
alerts delivered by the server's background task to a signed webhook; bad input refused like predict refuses it."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from goldmine.serving.app import create_app
from goldmine.serving.db import UsageRecord

from .conftest import webhook


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(settings, db, registered, keys, write_config, receiver):
    settings.apps = [write_config(sinks=[webhook(receiver.url), {"type": "log"}], delivery={"poll_seconds": 0.2})]
    with TestClient(create_app(settings)) as c:
        yield c


def crisis(n: int, day: str = "2026-03-05") -> list[dict]:
    return [{"time": f"{day}T{9 + i:02d}:00:00Z", "text": f"Tailspin Air shares plunge {i + 2}% after profit warning",
             "tickers": ["TAIL"]} for i in range(n)]


def test_post_items_then_read_series_and_alerts(client, keys, db, receiver, registered):
    h = auth(keys["acme"])
    r = client.post("/v1/apps/monitor/items", json={"items": crisis(6)}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stored"] == 6 and body["duplicates"] == 0 and len(body["items"]) == 6
    assert all(i["companies"] == ["Tailspin Air"] for i in body["items"])
    labels = [i["label"] for i in body["items"]]
    assert labels.count("negative") >= 5, labels  # the tiny model learned "plunge"
    [alert] = [a for a in body["alerts"] if a["rule"] == "negative-burst"]
    again = client.post("/v1/apps/monitor/items", json={"items": crisis(6)}, headers=h).json()
    assert (again["stored"], again["duplicates"], again["alerts"]) == (0, 6, [])
    assert all(i["duplicate"] for i in again["items"])
    deadline = time.monotonic() + 10
    while alert["id"] not in receiver.ids and time.monotonic() < deadline:
        time.sleep(0.05)  # the background task delivers it
    assert receiver.ids.count(alert["id"]) == 1 and receiver.deliveries[0]["verified"]
    series = client.get("/v1/apps/monitor/companies/Tailspin Air/series", headers=h).json()
    assert series["points"][0]["start"] == "2026-03-05T00:00:00Z" and series["points"][0]["items"] == 6
    assert [a["id"] for a in series["alerts"]] == [a["id"] for a in body["alerts"]]
    listed = client.get("/v1/apps/monitor/companies", headers=h).json()["companies"]
    assert listed[0]["company"] == "Tailspin Air" and listed[0]["alerts"] == len(body["alerts"])
    alerts = client.get("/v1/apps/monitor/alerts?company=Tailspin Air", headers=h).json()["alerts"]
    burst = next(a for a in alerts if a["id"] == alert["id"])
    deadline = time.monotonic() + 10
    while burst["deliveries"]["webhook"]["status"] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.05)
        burst = next(a for a in client.get("/v1/apps/monitor/alerts", headers=h).json()["alerts"]
                     if a["id"] == alert["id"])
    assert burst["deliveries"] == {"webhook": {"status": "delivered", "attempts": 1},
                                   "log": {"status": "delivered", "attempts": 1}}
    assert client.get("/v1/apps/monitor/companies/Nobody/series", headers=h).status_code == 404
    assert client.get("/v1/apps/monitor/companies/Tailspin Air/series?window=1h", headers=h).status_code == 422
    with db.session() as s:
        calls = list(s.query(UsageRecord).order_by(UsageRecord.id))
    assert [(c.app, c.items) for c in calls] == [("monitor", 6), ("monitor", 6)] + [("monitor", 0)] * (len(calls) - 2)
    assert calls[0].model == "fin-sentiment" and calls[0].version == registered.version and calls[0].input_tokens > 6


def test_bad_batches(client, keys, settings):
    h = auth(keys["acme"])
    one = crisis(1)[0]
    cases = {
        "empty batch": ({"items": []}, 422),
        "blank text": ({"items": [{**one, "text": " "}]}, 422),
        "no time": ({"items": [{"text": "x"}]}, 422),
        "bad time": ({"items": [{**one, "time": "soon"}]}, 422),
        "bad ticker": ({"items": [{**one, "tickers": ["no spaces"]}]}, 422),
        "oversize text": ({"items": [{**one, "text": "x" * (settings.limits.max_chars_per_text + 1)}]}, 413),
        "too many": ({"items": [one] * (settings.limits.max_items_per_call + 1)}, 413),
    }
    for name, (payload, status) in cases.items():
        r = client.post("/v1/apps/monitor/items", json=payload, headers=h)
        assert r.status_code == status, (name, r.text)
        assert "text" not in json.dumps(r.json()["error"].get("details", [])) or status == 422
    assert client.post("/v1/apps/monitor/items", json={"items": [one]}).status_code == 401
    r = client.post("/v1/apps/monitor/items", json={"items": [one]}, headers=auth(keys["globex"]))
    assert r.status_code == 404 and "not set up for this tenant" in r.text
