"""The HTTP API in-process (TestClient runs the app's lifespan): predictions, auth, limits, idempotency, admin."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from goldmine.serving.app import create_app
from goldmine.serving.auth import create_key
from goldmine.serving.db import UsageRecord
from goldmine.serving.registry import register


@pytest.fixture
def client(settings, db, models, keys):
    with TestClient(create_app(settings)) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def records(db) -> list[UsageRecord]:
    with db.session() as s:
        return list(s.query(UsageRecord).order_by(UsageRecord.id))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_predict_classification(client, keys, models, db):
    r = client.post("/v1/models/intents/predict", json={"texts": ["where is my parcel", "refund please"]},
                    headers=auth(keys["acme"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == r.headers["X-Model-Version"] == models["intents"].version
    assert body["request_id"] == r.headers["X-Request-Id"] and body["model"] == "intents"
    assert len(body["predictions"]) == 2 and {"label", "score", "scores"} <= set(body["predictions"][0])
    [rec] = records(db)
    assert (rec.request_id, rec.tenant_id, rec.model, rec.version, rec.items, rec.status) == (
        body["request_id"], "acme", "intents", models["intents"].version, 2, 200)
    assert rec.input_tokens > 2 and rec.latency_ms > 0 and rec.response_json is None


def test_predict_ner_and_x_api_key(client, keys):
    r = client.post("/v1/models/tickets/predict", json={"texts": ["Anna Schmidt from Acme in Berlin"]},
                    headers={"X-API-Key": keys["acme"]})
    assert r.status_code == 200, r.text
    assert "entities" in r.json()["predictions"][0]


def test_pair_model_over_http(settings, db, keys, tiny_run, client):
    """A pair model answers texts + texts_b, bills each pair once, and refuses calls that do not fit it."""
    register(db, settings.registry_dir, "matcher", tiny_run("pair"), "acme")
    pairs = {"texts": ["where is my order", "refund please"], "texts_b": ["my parcel is late", "cancel my card"]}
    r = client.post("/v1/models/matcher/predict", json=pairs, headers=auth(keys["acme"]))
    assert r.status_code == 200, r.text
    assert [set(p["scores"]) for p in r.json()["predictions"]] == [{"same", "different"}] * 2
    one_sided = client.post("/v1/models/matcher/predict", json={"texts": ["hi"]}, headers=auth(keys["acme"]))
    assert one_sided.status_code == 422 and "trained on text pairs" in one_sided.json()["error"]["message"]
    to_single = client.post("/v1/models/intents/predict", json=pairs, headers=auth(keys["acme"]))
    assert to_single.status_code == 422 and "single texts" in to_single.json()["error"]["message"]
    uneven = client.post("/v1/models/matcher/predict", json={"texts": ["a", "b"], "texts_b": ["c"]},
                         headers=auth(keys["acme"]))
    assert uneven.status_code == 422
    too_long = client.post("/v1/models/matcher/predict", headers=auth(keys["acme"]),
                           json={"texts": ["a"], "texts_b": ["x" * (settings.limits.max_chars_per_text + 1)]})
    assert too_long.status_code == 413 and "texts_b[0]" in too_long.json()["error"]["message"]
    [rec] = records(db)  # only the call that was answered is billed
    assert (rec.model, rec.items, rec.status) == ("matcher", 2, 200) and rec.input_tokens > 8


def test_zero_shot_model_takes_labels_per_request(settings, db, keys, tiny_model_dir, tmp_path, client):
    """A zero-shot model chooses among a call's own labels (billed as any call); others refuse a label list."""
    import goldmine

    labels = tmp_path / "labels.yaml"
    labels.write_text("labels: {refund: money back, delivery: where is my parcel}\n")
    run = tmp_path / "zeroshot"
    goldmine.train(None, **{"tuning.strategy": "zeroshot", "tuning.zeroshot.labels": labels,
                            "model.name": str(tiny_model_dir), "output_dir": run})
    register(db, settings.registry_dir, "topics", run, "acme")
    own = client.post("/v1/models/topics/predict", json={"texts": ["my parcel"]}, headers=auth(keys["acme"]))
    assert own.status_code == 200 and set(own.json()["predictions"][0]["scores"]) == {"refund", "delivery"}
    asked = {"texts": ["my parcel is late", "refund please"], "labels": ["billing", "shipping", "login"]}
    r = client.post("/v1/models/topics/predict", json=asked, headers=auth(keys["acme"]))
    assert r.status_code == 200, r.text
    assert [set(p["scores"]) for p in r.json()["predictions"]] == [{"billing", "shipping", "login"}] * 2
    expected = goldmine.Model.load(run).predict(asked["texts"], labels=asked["labels"])
    assert [p["label"] for p in r.json()["predictions"]] == [p["label"] for p in expected]
    twice = client.post("/v1/models/topics/predict", json={**asked, "labels": ["a", "a"]}, headers=auth(keys["acme"]))
    assert twice.status_code == 422 and "named more than once" in twice.json()["error"]["message"]
    trained = client.post("/v1/models/intents/predict", json=asked, headers=auth(keys["acme"]))
    assert trained.status_code == 422 and "zero-shot models" in trained.json()["error"]["message"]
    billed = [(rec.model, rec.items, rec.status) for rec in records(db)]
    assert billed == [("topics", 1, 200), ("topics", 2, 200)]  # the refused calls are not billed


@pytest.mark.parametrize(("key", "status", "code"), [
    (None, 401, "unauthorized"),
    ("gm_nope_nope", 401, "unauthorized"),
    ("admin_only", 403, "forbidden"),  # no predict scope
    ("globex", 404, "not_found"),  # another tenant's model looks like no model at all
])
def test_auth_paths(client, keys, key, status, code, db):
    headers = auth(keys.get(key, key)) if key else {}
    r = client.post("/v1/models/intents/predict", json={"texts": ["hi"]}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)
    if status == 404:
        missing = client.post("/v1/models/no-such-model/predict", json={"texts": ["hi"]}, headers=headers)
        assert missing.json()["error"]["message"].replace("no-such-model", "intents") == r.json()["error"]["message"]
    assert records(db) == []


def test_revoked_key(client, db, keys):
    from goldmine.serving.auth import revoke_key

    revoke_key(db, keys["acme"])
    r = client.post("/v1/models/intents/predict", json={"texts": ["hi"]}, headers=auth(keys["acme"]))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_limits(settings, db, models, keys):
    settings.limits.max_items_per_call, settings.limits.max_chars_per_text = 3, 20
    settings.limits.max_body_bytes = 500
    with TestClient(create_app(settings)) as client:
        h = auth(keys["acme"])
        r = client.post("/v1/models/intents/predict", json={"texts": ["a"] * 4}, headers=h)
        assert r.status_code == 413 and "4 texts in one call; the limit is 3" in r.json()["error"]["message"]
        r = client.post("/v1/models/intents/predict", json={"texts": ["ok", "x" * 21]}, headers=h)
        assert r.status_code == 413 and "texts[1] has 21 characters; the limit is 20" in r.text
        r = client.post("/v1/models/intents/predict", content=b'{"texts": ["' + b"x" * 600 + b'"]}', headers=h)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        for bad in ({"texts": []}, {"texts": "not a list"}, {"texts": [1]}, {}):
            r = client.post("/v1/models/intents/predict", json=bad, headers=h)
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        r = client.post("/v1/models/intents/predict", json={"texts": {"secret@example.com": 1}}, headers=h)
        assert r.status_code == 422 and "secret@example.com" not in r.text  # input never echoed
    assert records(db) == []


def test_rate_limit_429(db, settings, models):
    key = create_key(db, "acme", "predict", rate=0.01).key  # one request per 100 s, burst 1
    with TestClient(create_app(settings)) as client:
        first = client.post("/v1/models/intents/predict", json={"texts": ["a"]}, headers=auth(key))
        second = client.post("/v1/models/intents/predict", json={"texts": ["a"]}, headers=auth(key))
    assert first.status_code == 200 and first.headers["RateLimit-Limit"] == "1"
    assert first.headers["RateLimit-Remaining"] == "0"
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limited"
    # one token per 100 s: ~100 s to wait (less the seconds the first call took, on a loaded machine)
    assert 95 <= int(second.headers["Retry-After"]) <= 100 and second.headers["RateLimit-Remaining"] == "0"
    assert len(records(db)) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_monthly_quota(db, settings, models):
    key = create_key(db, "acme", "predict", monthly_quota=3).key
    with TestClient(create_app(settings)) as client:
        ok = client.post("/v1/models/intents/predict", json={"texts": ["a", "b"]}, headers=auth(key))
        over = client.post("/v1/models/intents/predict", json={"texts": ["c", "d"]}, headers=auth(key))
        last = client.post("/v1/models/intents/predict", json={"texts": ["e"]}, headers=auth(key))
    assert (ok.status_code, over.status_code, last.status_code) == (200, 429, 200)
    assert over.json()["error"]["code"] == "quota_exhausted" and "monthly quota of 3 texts exhausted" in over.text
    with TestClient(create_app(settings)) as client:  # a restarted server counts from the records
        again = client.post("/v1/models/intents/predict", json={"texts": ["f"]}, headers=auth(key))
    assert again.status_code == 429


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_idempotency_key_never_bills_twice(client, keys, db):
    h = {**auth(keys["acme"]), "Idempotency-Key": "order-42"}
    first = client.post("/v1/models/intents/predict", json={"texts": ["refund please"]}, headers=h)
    again = client.post("/v1/models/intents/predict", json={"texts": ["refund please"]}, headers=h)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/v1/models/intents/predict", json={"texts": ["something else"]}, headers=h)
    assert other.status_code == 409 and "different request" in other.text
    other_key = client.post("/v1/models/intents/predict", json={"texts": ["refund please"]},
                            headers={**auth(keys["admin"]), "Idempotency-Key": "order-42"})
    assert other_key.status_code == 200 and "Idempotent-Replayed" not in other_key.headers
    assert [r.idempotency_key for r in records(db)] == ["order-42", "order-42"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_models_and_usage(client, keys, models):
    mine = client.get("/v1/models", headers=auth(keys["acme"])).json()["models"]
    assert [m["name"] for m in mine] == ["intents", "tickets"]
    assert mine[0]["aliases"] == {"production": models["intents"].version} and mine[0]["task"] == "classification"
    everything = client.get("/v1/models", headers=auth(keys["admin_only"])).json()["models"]
    assert [m["name"] for m in everything] == ["intents", "other", "tickets"]
    for _ in range(3):
        client.post("/v1/models/intents/predict", json={"texts": ["a", "b"]}, headers=auth(keys["acme"]))
    usage = client.get("/v1/usage", headers=auth(keys["acme"])).json()
    assert (usage["calls"], usage["items"], usage["by_model"][0]["model"]) == (3, 6, "intents")
    assert client.get("/v1/usage?tenant=acme", headers=auth(keys["globex"])).status_code == 403
    assert client.get("/v1/usage?tenant=acme", headers=auth(keys["admin_only"])).json()["calls"] == 3
    assert client.get("/v1/usage?month=1999-01", headers=auth(keys["acme"])).json()["calls"] == 0
    assert client.get("/v1/usage?start=2020-01-01", headers=auth(keys["acme"])).status_code == 422
    assert client.get("/v1/usage", headers={}).status_code == 401


def test_promote_and_rollback_change_the_answering_version(client, keys, db, settings, tiny_run, tmp_path):
    import json
    import shutil

    from goldmine.serving.registry import register

    second = tmp_path / "v2"
    shutil.copytree(tiny_run("classification"), second)
    (second / "labels.json").write_text((second / "labels.json").read_text() + "\n")
    v1 = client.post("/v1/models/intents/predict", json={"texts": ["a"]}, headers=auth(keys["acme"]))
    v2 = register(db, settings.registry_dir, "intents", second, "acme").version
    h = auth(keys["admin"])
    assert client.post("/v1/admin/models/intents/promote", json={"target": v2}, headers=auth(keys["acme"])
                       ).status_code == 403
    moved = client.post("/v1/admin/models/intents/promote", json={"target": v2}, headers=h).json()
    assert moved == {"model": "intents", "alias": "production", "previous": v1.headers["X-Model-Version"],
                     "current": v2}
    after = client.post("/v1/models/intents/predict", json={"texts": ["a"]}, headers=auth(keys["acme"]))
    assert after.headers["X-Model-Version"] == v2
    pinned = client.post("/v1/models/intents/predict?version=" + v1.headers["X-Model-Version"],
                         json={"texts": ["a"]}, headers=auth(keys["acme"]))
    assert pinned.headers["X-Model-Version"] == v1.headers["X-Model-Version"]
    back = client.post("/v1/admin/models/intents/rollback", headers=h)
    assert back.status_code == 200 and back.json()["current"] == v1.headers["X-Model-Version"]
    again = client.post("/v1/models/intents/predict", json={"texts": ["a"]}, headers=auth(keys["acme"]))
    assert again.headers["X-Model-Version"] == v1.headers["X-Model-Version"]
    conflict = client.post("/v1/admin/models/intents/rollback", headers=h)
    assert conflict.status_code == 409
    assert client.post("/v1/admin/models/nope/rollback", headers=h).status_code == 404
    assert json.loads(client.get("/readyz").text)["status"] == "ready"


async def until(app, in_flight: int, depth: int, seconds: float = 60) -> None:
    """Wait until the loaded model's batcher holds `in_flight` calls, `depth` texts of them queued (not a fixed
    sleep: on a loaded machine the first call may still be loading the model after any fixed time)."""
    import asyncio
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        loaded = list(app.state.services.pool._loaded.values())
        if loaded and (loaded[0].batcher.in_flight, loaded[0].batcher.depth) == (in_flight, depth):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the batcher never held {in_flight} calls with {depth} queued")


def test_overload_is_503_with_retry_after(settings, db, models, keys, monkeypatch):
    import threading

    from goldmine.serving import runtime

    # one worker: the second call must wait in the queue behind the held first one
    settings.batching.max_queue, settings.batching.max_batch_size, settings.batching.workers = 1, 1, 1
    gate = threading.Event()
    real = runtime.batch_function

    def slow(model):
        run = real(model)
        return lambda texts: (gate.wait(10), run(texts))[1]

    monkeypatch.setattr(runtime, "batch_function", slow)
    import asyncio

    import httpx

    async def main(app):
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                        base_url="http://test") as c:
            h = auth(keys["acme"])
            running = asyncio.ensure_future(c.post("/v1/models/intents/predict", json={"texts": ["a"]}, headers=h))
            await until(app, in_flight=1, depth=0)  # the first call is in its (held) batch
            queued = asyncio.ensure_future(c.post("/v1/models/intents/predict", json={"texts": ["b"]}, headers=h))
            await until(app, in_flight=2, depth=1)
            refused = await c.post("/v1/models/intents/predict", json={"texts": ["c"]}, headers=h)
            gate.set()
            return refused, await running, await queued, (await c.get("/metrics")).text

    refused, running, queued, metrics = asyncio.run(main(create_app(settings)))
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
    assert int(refused.headers["Retry-After"]) >= 1
    assert running.status_code == queued.status_code == 200
    assert len(records(db)) == 2
    assert 'goldmine_requests_total{model="intents",status="503"} 1.0' in metrics
    assert 'goldmine_requests_total{model="intents",status="200"} 2.0' in metrics


def test_metrics_health_and_request_logs(client, keys, caplog):
    with caplog.at_level(logging.INFO, logger="goldmine.serving.requests"):
        client.post("/v1/models/intents/predict", json={"texts": ["mail anna@example.com now"]},
                    headers=auth(keys["acme"]))
    assert "anna@example.com" not in caplog.text
    assert '"n_texts": 1' in caplog.text and '"tenant": "acme"' in caplog.text
    assert client.get("/healthz").json() == {"status": "ok"}
    text = client.get("/metrics").text
    for name in ("goldmine_requests_total", "goldmine_request_latency_seconds", "goldmine_batch_size",
                 "goldmine_queue_depth", "goldmine_input_tokens_total", "goldmine_usage_write_failures_total"):
        assert name in text
    assert client.get("/openapi.json").json()["paths"]["/v1/models/{name}/predict"]


def test_raw_inputs_logged_masked_when_enabled(settings, db, models, keys, caplog):
    settings.log_raw_inputs = True
    with TestClient(create_app(settings)) as client, caplog.at_level(logging.INFO, "goldmine.serving.requests"):
        client.post("/v1/models/intents/predict", json={"texts": ["card 4111 1111 1111 1111, anna@example.com"]},
                    headers=auth(keys["acme"]))
    assert "card <card>, <email>" in caplog.text and "4111" not in caplog.text


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_usage_write_failure_withholds_the_answer(client, keys, db, monkeypatch):
    from sqlalchemy.exc import OperationalError

    services = client.app.state.services

    def broken(usage):
        raise OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(services.meter, "_insert", broken)
    r = client.post("/v1/models/intents/predict", json={"texts": ["a"]}, headers=auth(keys["acme"]))
    assert r.status_code == 503 and r.json()["error"]["code"] == "usage_not_recorded"
    assert "predictions" not in r.text
    assert "goldmine_usage_write_failures_total 1.0" in client.get("/metrics").text


def test_chunked_body_over_the_limit_is_413(settings, db, models, keys):
    settings.limits.max_body_bytes = 200

    def chunks():
        yield b'{"texts": ["'
        for _ in range(10):
            yield b"x" * 50
        yield b'"]}'

    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/models/intents/predict", content=chunks(), headers=auth(keys["acme"]))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert records(db) == []


def test_broken_model_is_500_without_paths(client, keys, models, settings):
    import shutil

    shutil.rmtree(models["intents"].path)  # the registry copy vanished under the server
    r = client.post("/v1/models/intents/predict", json={"texts": ["a"]}, headers=auth(keys["acme"]))
    assert r.status_code == 500 and r.json()["error"] == {"code": "internal_error", "message": "internal server error"}
    assert str(settings.registry_dir) not in r.text


def test_hot_swap_answers_in_flight_calls_with_the_old_version(settings, db, models, keys, tiny_run, tmp_path,
                                                              monkeypatch):
    """Calls queued on the old version when promote happens finish on it; later calls get the new version."""
    import asyncio
    import shutil
    import threading

    import httpx

    from goldmine.serving import runtime
    from goldmine.serving.registry import register

    second = tmp_path / "v2"
    shutil.copytree(tiny_run("classification"), second)
    (second / "labels.json").write_text((second / "labels.json").read_text() + "\n")
    v1, v2 = models["intents"].version, register(db, settings.registry_dir, "intents", second, "acme").version
    settings.batching.max_batch_size, settings.batching.workers = 1, 1  # one worker: later calls queue
    gate = threading.Event()
    real = runtime.batch_function

    def held(model):
        run = real(model)
        return lambda texts: (gate.wait(10), run(texts))[1]

    monkeypatch.setattr(runtime, "batch_function", held)

    async def main(app):
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                        base_url="http://test") as c:
            h = auth(keys["acme"])
            old = [asyncio.ensure_future(c.post("/v1/models/intents/predict", json={"texts": [f"t{i}"]}, headers=h))
                   for i in range(4)]
            await until(app, in_flight=4, depth=3)  # one call in a held batch, three queued behind it
            moved = await c.post("/v1/admin/models/intents/promote", json={"target": v2}, headers=auth(keys["admin"]))
            loaded = app.state.services.pool.loaded
            gate.set()
            new = await c.post("/v1/models/intents/predict", json={"texts": ["after"]}, headers=h)
            return moved, loaded, await asyncio.gather(*old), new

    moved, loaded, old, new = asyncio.run(main(create_app(settings)))
    assert moved.status_code == 200 and loaded == [("intents", v2)]  # v1 retired (still draining)
    assert [r.status_code for r in old] == [200] * 4
    assert [r.headers["X-Model-Version"] for r in old] == [v1] * 4
    assert new.status_code == 200 and new.headers["X-Model-Version"] == v2
    assert len(records(db)) == 5


@pytest.mark.parametrize("query", ["month=2026-13", "month=9999-12", "month=", "month=2026-1", "start=2026-01-01",
                                   "end=2026-01-01", "start=2026-02-01&end=2026-01-01",
                                   "month=2026-01&start=2026-01-01&end=2026-01-31"])
def test_bad_usage_periods_are_422(client, keys, query):
    r = client.get(f"/v1/usage?{query}", headers=auth(keys["acme"]))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_the_last_representable_day_is_a_period_like_any_other(client, keys):
    r = client.get("/v1/usage?start=9999-12-31&end=9999-12-31", headers=auth(keys["acme"]))
    assert r.status_code == 200 and r.json()["calls"] == 0


def test_bad_alias_names_are_422(client, keys, models):
    h = auth(keys["admin"])
    r = client.post("/v1/admin/models/intents/promote", json={"target": models["intents"].version, "alias": "Bad!"},
                    headers=h)
    assert r.status_code == 422
    assert client.post("/v1/admin/models/intents/rollback", json={"alias": "x y"}, headers=h).status_code == 422


async def _concurrently(app, calls: list[tuple[str, bytes]]) -> list:
    """POST each (key, raw JSON body) to the intents model at once, through the app's lifespan."""
    import asyncio

    import httpx

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a 500 is an answer here
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        return await asyncio.gather(*(
            c.post("/v1/models/intents/predict", content=body,
                   headers={**auth(key), "Content-Type": "application/json"}) for key, body in calls))


def test_a_text_that_is_not_unicode_is_422_and_fails_no_one_else(settings, db, models, keys):
    """A JSON escape of a lone surrogate decodes to a str no tokenizer takes: refused with 422 naming the item
    (never echoing it) before it can share a batch with other callers, who get their answers."""
    settings.batching.max_batch_size, settings.batching.max_wait_ms = 4, 5000  # everything valid in one batch
    bad = b'{"texts": ["fine", "caf\\u00e9 \\ud800 123-45-6789"]}'
    calls = [(keys["acme"], b'{"texts": ["where is my parcel"]}'), (keys["admin"], bad),
             (keys["admin"], b'{"texts": ["refund please", "hello"]}'), (keys["acme"], b'{"texts": ["bye"]}')]
    responses = asyncio_run(_concurrently(create_app(settings), calls))
    assert [r.status_code for r in responses] == [200, 422, 200, 200]
    error = responses[1].json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith("texts[1] is not valid Unicode")
    assert "123-45-6789" not in responses[1].text and "caf" not in responses[1].text
    assert [len(r.json()["predictions"]) for r in responses if r.status_code == 200] == [1, 2, 1]
    assert len(records(db)) == 3


def test_a_request_that_breaks_its_batch_fails_alone(settings, db, models, keys, monkeypatch):
    """If a forward pass fails anyway (here: a runtime that raises for one text), the batch's requests are run
    again one by one: the faulty one gets 500, the callers who shared its batch get their predictions."""
    from goldmine.serving import runtime

    settings.batching.max_batch_size, settings.batching.max_wait_ms = 4, 5000  # the four calls make one batch
    batches = []
    real = runtime.batch_function

    def picky(model):
        run = real(model)

        def fn(items):
            batches.append(sorted(items))
            if "poison" in items:
                raise RuntimeError("the runtime refused a text")
            return run(items)

        return fn

    monkeypatch.setattr(runtime, "batch_function", picky)
    calls = [(keys["acme"], b'{"texts": ["a"]}'), (keys["admin"], b'{"texts": ["poison"]}'),
             (keys["admin"], b'{"texts": ["b"]}'), (keys["acme"], b'{"texts": ["c"]}')]
    responses = asyncio_run(_concurrently(create_app(settings), calls))
    assert [r.status_code for r in responses] == [200, 500, 200, 200]
    assert responses[1].json()["error"] == {"code": "internal_error", "message": "internal server error"}
    assert batches[0] == ["a", "b", "c", "poison"] and sorted(batches[1:]) == [["a"], ["b"], ["c"], ["poison"]]
    assert sorted(r.items for r in records(db)) == [1, 1, 1]


def asyncio_run(coro):
    import asyncio

    return asyncio.run(asyncio.wait_for(coro, 120))


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded"])
def test_a_json_body_is_read_as_json_without_a_json_content_type(client, keys, content_type):
    """What `curl -d '{...}'` sends (a form content type), or no content type at all: read as JSON."""
    headers = {**auth(keys["acme"]), **({"Content-Type": content_type} if content_type else {})}
    r = client.post("/v1/models/intents/predict", content=b'{"texts": ["where is my parcel?"]}', headers=headers)
    assert r.status_code == 200, r.text
    assert r.request.headers.get("content-type") == content_type  # really sent without a JSON type
    assert len(r.json()["predictions"]) == 1


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/x-www-form-urlencoded", b"texts=where+is+my+parcel"),
    ("text/plain", b'{"texts": ["a"]}'),
    (None, b"texts=a"),
])
def test_a_body_that_is_not_json_says_to_send_json(client, keys, content_type, body):
    headers = {**auth(keys["acme"]), **({"Content-Type": content_type} if content_type else {})}
    r = client.post("/v1/models/intents/predict", content=body, headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    message = r.json()["error"]["message"]
    assert "the body must be a JSON object; send Content-Type: application/json" in message
    assert f"(it came as {content_type or 'no Content-Type'})" in message and "parcel" not in r.text


@pytest.mark.parametrize(("body", "message"), [
    (b'{"texts": ["caf\xe9"]}', "body: not valid UTF-8 (byte 15); send JSON in UTF-8"),
    (b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body: JSON nested too deeply"),
    (b'{"texts": ["a"', "body: not valid JSON (Expecting ',' delimiter at character 14); the body must be a JSON "
                        "object"),
])
def test_unreadable_bodies_are_422_with_the_error_shape(client, keys, body, message):
    r = client.post("/v1/models/intents/predict", content=body,
                    headers={**auth(keys["acme"]), "Content-Type": "application/json"})
    error = r.json()["error"]
    assert (r.status_code, error["code"], error["message"]) == (422, "invalid_request", message)


def test_replies_are_kept_for_the_retention_then_deleted(settings, db, models, keys):
    """Past `idempotency_ttl_seconds` a stored reply is gone (the app's purge runs every min(ttl, 1 h)) and the
    key is a new call again; the usage record stays."""
    import time

    settings.idempotency_ttl_seconds = 1.0
    h = {**auth(keys["acme"]), "Idempotency-Key": "order-7"}
    with TestClient(create_app(settings)) as client:
        first = client.post("/v1/models/tickets/predict", json={"texts": ["Anna Schmidt in Berlin"]}, headers=h)
        again = client.post("/v1/models/tickets/predict", json={"texts": ["Anna Schmidt in Berlin"]}, headers=h)
        assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
        deadline = time.monotonic() + 30
        while records(db)[0].response_json is not None and time.monotonic() < deadline:
            time.sleep(0.1)  # the purge task, not a look-up, deletes it
        [record] = records(db)
        assert (record.idempotency_key, record.request_hash, record.response_json) == (None, None, None)
        other = client.post("/v1/models/tickets/predict", json={"texts": ["something else"]}, headers=h)
        assert other.status_code == 200 and "Idempotent-Replayed" not in other.headers  # not a 409 any more
    assert [r.items for r in records(db)] == [1, 1]


def test_the_schema_declares_the_error_body(client):
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/v1/models/{name}/predict"]["post"]["responses"]
    for status in ("401", "403", "404", "409", "413", "422", "429", "503"):
        assert predict[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert schema["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
    request = schema["components"]["schemas"]["PredictRequest"]["properties"]["texts"]
    assert (request["maxItems"], request["items"]["maxLength"]) == (64, 2000)  # the settings' limits
    month = schema["paths"]["/v1/usage"]["get"]["parameters"][0]
    assert month["name"] == "month" and month["schema"]["anyOf"][0]["pattern"] == r"^[12][0-9]{3}-(0[1-9]|1[0-2])$"


def test_an_empty_idempotency_key_is_422_not_a_replay_of_nothing(client, keys, db):
    h = {**auth(keys["acme"]), "Idempotency-Key": ""}
    first = client.post("/v1/models/intents/predict", json={"texts": ["a"]}, headers=h)
    second = client.post("/v1/models/intents/predict", json={"texts": ["b"]}, headers=h)
    assert first.status_code == second.status_code == 422
    assert first.json()["error"]["message"] == "idempotency-key (header): String should have at least 1 character"
    assert records(db) == []
