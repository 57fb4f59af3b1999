"""Apps over HTTP (the `echo` test app): mounted under /v1/apps/<name>/ behind the same keys, tenants, limits,
rate limits and quota as predict; each call one usage record carrying the app's name; an invoice line per app."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from goldmine.serving.app import create_app
from goldmine.serving.auth import create_key
from goldmine.serving.billing import invoice
from goldmine.serving.db import UsageRecord, utcnow
from goldmine.serving.settings import PricePlan


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(echo_app, echo_config, settings, db, models, keys):
    settings.apps = [echo_config()]
    with TestClient(create_app(settings)) as c:
        yield c


def records(db) -> list[UsageRecord]:
    with db.session() as s:
        return list(s.query(UsageRecord).order_by(UsageRecord.id))


def test_app_call_is_metered_with_the_app_name_and_billed_on_its_own_line(client, keys, db, models, settings):
    settings.plans["default"] = PricePlan(per_call_minor=1, per_1k_tokens_minor=10, app_per_call_minor={"echo": 25})
    r = client.post("/v1/apps/echo/classify", json={"texts": ["where is my parcel", "refund"]},
                    headers=auth(keys["acme"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["greeting"] == "hello" and len(body["labels"]) == 2 and body["request_id"] == r.headers["X-Request-Id"]
    assert client.get("/v1/apps/echo/greeting", headers=auth(keys["acme"])).status_code == 200
    assert client.post("/v1/models/intents/predict", json={"texts": ["hi"]}, headers=auth(keys["acme"])).status_code \
        == 200
    app_call, read, predict = records(db)
    assert (app_call.app, app_call.model, app_call.version, app_call.items) == (
        "echo", "intents", models["intents"].version, 2) and app_call.input_tokens > 2
    assert (read.app, read.model, read.items, read.input_tokens) == ("echo", "", 0, 0)
    assert predict.app is None
    usage = client.get("/v1/usage", headers=auth(keys["acme"])).json()
    assert usage["by_model"] == [{"model": "intents", "calls": 1, "items": 1, "input_tokens": predict.input_tokens}]
    assert usage["by_app"] == [{"app": "echo", "calls": 2, "items": 2, "input_tokens": app_call.input_tokens}]
    bill = invoice(db, settings, "acme", utcnow().strftime("%Y-%m"))
    model_line, app_line = bill.lines
    assert (model_line.model, model_line.app, model_line.calls) == ("intents", None, 1)
    assert (app_line.model, app_line.app, app_line.calls, app_line.per_call_minor, app_line.amount_minor) == (
        "", "echo", 2, 25, 50)
    assert bill.total_minor == model_line.amount_minor + 50 and bill.calls == 3
    assert bill.to_csv().splitlines()[2].endswith(",50,EUR,echo,api,0,0,0")  # no job columns on a calls line


def test_unknown_app_route_and_tenant(client, keys):
    r = client.get("/v1/apps/nope/anything", headers=auth(keys["acme"]))
    assert r.status_code == 404 and r.json()["error"]["message"].startswith("no app named 'nope'; the apps are: ")
    assert "echo" in r.json()["error"]["message"]
    r = client.post("/v1/apps/echo/nothing-here", headers=auth(keys["acme"]))
    assert r.status_code == 404 and "app 'echo' has no route POST /v1/apps/echo/nothing-here" in r.text
    r = client.get("/v1/apps/echo/greeting", headers=auth(keys["globex"]))
    assert r.status_code == 404 and "not set up for this tenant" in r.text
    assert client.get("/v1/apps/nope").status_code == 401  # no key: nothing about apps
    assert client.get("/v1/apps/echo/greeting", headers=auth(keys["admin_only"])).status_code == 403
    listed = {a["name"]: a for a in client.get("/v1/apps", headers=auth(keys["acme"])).json()}
    assert listed["echo"]["set_up"] and listed["echo"]["models"]["models.classifier"]["name"] == "intents"
    assert not {a["name"]: a for a in client.get("/v1/apps", headers=auth(keys["globex"])).json()}["echo"]["set_up"]


def test_empty_and_oversize_messages(client, keys, settings, db):
    h = auth(keys["acme"])
    limit = settings.limits
    cases = {
        "no texts": ({"texts": []}, 422, "texts: give at least one"),
        "blank": ({"texts": ["ok", "  "]}, 422, "texts[1] is empty"),
        "too long": ({"texts": ["x" * (limit.max_chars_per_text + 1)]}, 413, "texts[0] has 2001 characters"),
        "too many": ({"texts": ["a"] * (limit.max_items_per_call + 1)}, 413, "65 items in one call; the limit is 64"),
        "surrogate": ('{"texts": ["\\ud800"]}', 422, "texts[0] is not valid Unicode text"),
        "not json": ("{", 422, "not valid JSON"),
    }
    for name, (payload, status, message) in cases.items():
        kwargs = {"content": payload, "headers": {**h, "Content-Type": "application/json"}} \
            if isinstance(payload, str) else {"json": payload, "headers": h}
        r = client.post("/v1/apps/echo/classify", **kwargs)
        assert (r.status_code, message in r.json()["error"]["message"]) == (status, True), (name, r.text)
    assert records(db) == []  # nothing refused is billed


def test_rate_limit_and_quota_apply(client, db):
    limited = create_key(db, "acme", "predict", rate=0.01).key
    assert client.get("/v1/apps/echo/greeting", headers=auth(limited)).status_code == 200
    assert client.get("/v1/apps/echo/greeting", headers=auth(limited)).status_code == 429
    quota = create_key(db, "acme", "predict", monthly_quota=2).key
    r = client.post("/v1/apps/echo/classify", json={"texts": ["a", "b", "c"]}, headers=auth(quota))
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exhausted"
    assert client.post("/v1/apps/echo/classify", json={"texts": ["a", "b"]}, headers=auth(quota)).status_code == 200


def test_config_naming_a_missing_version(echo_app, echo_config, settings, db, models, keys, caplog):
    settings.apps = [echo_config(models={"classifier": {"name": "intents", "version": "v404"}})]
    with caplog.at_level(logging.ERROR), TestClient(create_app(settings)) as client:
        r = client.post("/v1/apps/echo/classify", json={"texts": ["hi"]}, headers=auth(keys["acme"]))
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    assert "misconfigured for this tenant: models.classifier: model 'intents' has no alias or version 'v404'" in r.text
    assert "echo.yaml:4: models.classifier" in caplog.text  # the operator learns the file and line at start-up
    assert records(db) == []


def test_a_broken_app_config_stops_the_server(echo_app, echo_config, settings):
    settings.apps = [echo_config(tenant=None)]
    with pytest.raises(Exception, match=r"echo.yaml:2: tenant: Input should be a valid string"), \
            TestClient(create_app(settings)):
        pass
    settings.apps = [echo_config(), echo_config("again.yaml")]
    with pytest.raises(Exception, match="configured twice"), TestClient(create_app(settings)):
        pass
