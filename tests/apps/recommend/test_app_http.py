"""`/v1/apps/recommend/...` through the app (TestClient) and through a real `goldmine serve`: keys, tenants,
metering (a usage record with the app's name per call), cold-start items, interactions with unknown items as a
counted warning, and every bad input refused with a clear status before anything is billed."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from goldmine.apps.recommend.demo import NEW_BOOK
from goldmine.serving.app import create_app
from goldmine.serving.billing import invoice
from goldmine.serving.db import UsageRecord, utcnow

URL = "/v1/apps/recommend"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def usage(db) -> list[tuple]:
    with db.session() as s:
        return [(u.app, u.model, u.items) for u in s.query(UsageRecord).order_by(UsageRecord.id)]


@pytest.fixture
def client(built_app, recommend_config, settings, keys):
    settings.apps = [recommend_config()]
    with TestClient(create_app(settings)) as c:
        yield c


def test_recommend_items_and_interactions_are_metered(client, keys, db, encoder, settings):
    h = auth(keys["acme"])
    r = client.post(f"{URL}/recommend", json={"user_id": "u0", "k": 3}, headers=h)
    assert r.status_code == 200, r.text
    answers = r.json()["recommendations"]
    assert len(answers) == 3 and r.json()["request_id"]
    assert all(a["explanation"]["similar_to"] and a["explanation"]["text"].startswith("Because you liked")
               for a in answers)
    history = client.post(f"{URL}/recommend", headers=h, json={
        "history": ["b10", {"item_id": "b11", "rating": 5, "timestamp": 2}], "k": 2,
        "filters": {"categories": ["Science fiction"], "exclude_items": ["b12"]}}).json()["recommendations"]
    assert len(history) == 2 and not {"b10", "b11", "b12"} & {a["item_id"] for a in history}
    r = client.post(f"{URL}/items", json={"items": [NEW_BOOK.to_dict()]}, headers=h)
    assert r.status_code == 200 and r.json()["added"] == 1 and r.json()["items"] == 37, r.text
    only_new = client.post(f"{URL}/recommend", headers=h, json={"history": ["b10"], "filters": {"items": ["new-1"]}})
    assert [a["item_id"] for a in only_new.json()["recommendations"]] == ["new-1"]  # cold start: from its text
    r = client.post(f"{URL}/interactions", headers=h, json={"interactions": [
        {"user_id": "newbie", "item_id": "new-1", "rating": 5}, {"user_id": "newbie", "item_id": "ghost"}]})
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 1 and r.json()["warnings"][0]["count"] == 1
    assert r.json()["warnings"][0]["examples"] == ["ghost"]
    newbie = client.post(f"{URL}/recommend", json={"user_id": "newbie", "k": 1}, headers=h).json()
    assert newbie["recommendations"][0]["explanation"]["similar_to"][0]["item_id"] == "new-1"
    assert usage(db) == [("recommend", "shop-encoder", 1)] * 3 + [("recommend", "shop-encoder", 1),
                                                                  ("recommend", "shop-encoder", 0),
                                                                  ("recommend", "shop-encoder", 1)]
    with db.session() as s:
        assert s.query(UsageRecord).filter(UsageRecord.items == 1).first().version == encoder.version
    [line] = invoice(db, settings, "acme", utcnow().strftime("%Y-%m")).lines  # the app's own invoice line
    assert (line.app, line.model, line.calls, line.items) == ("recommend", "", 6, 5)


def test_bad_input(client, keys, db, settings):
    h = auth(keys["acme"])
    limit, chars = settings.limits.max_items_per_call, settings.limits.max_chars_per_text
    book = {"id": "z1", "title": "Z"}
    cases = [
        ("recommend", {}, 422, "give either user_id"),
        ("recommend", {"user_id": "u0", "history": ["b00"]}, 422, "give either user_id"),
        ("recommend", {"user_id": "nobody"}, 404, "unknown user 'nobody'"),
        ("recommend", {"user_id": "u0", "k": 0}, 422, "k"),
        ("recommend", {"user_id": "u0", "k": 101}, 422, "k"),
        ("recommend", {"history": ["nope"]}, 422, "not in the catalog: ['nope']"),
        ("recommend", {"history": ["b00"] * 10_001}, 413, "the limit is 10000"),
        ("recommend", {"user_id": "u0", "filters": {"categories": ["Cookin"]}}, 422, "did you mean 'Cooking'"),
        ("items", {"items": []}, 422, "give at least one"),
        ("items", {"items": [book] * (limit + 1)}, 413, f"the limit is {limit}"),
        ("items", {"items": [{**book, "description": "x" * chars}]}, 413, f"the limit is {chars}"),
        ("items", {"items": [{"id": "z1", "title": "  "}]}, 422, "items[0].title is empty"),
        ("items", {"items": [{"id": "b00", "title": "Again"}]}, 422, "already in the catalog or given twice"),
        ("items", {"items": [book, {**book, "title": "Twice"}]}, 422, "given twice: ['z1']"),
        ("items", {}, 422, "items"),
        ("interactions", {"interactions": []}, 422, "give at least one"),
        ("interactions", {"interactions": [{"user_id": "u", "item_id": "b00"}] * (limit + 1)}, 413,
         f"the limit is {limit}"),
        ("interactions", {"interactions": [{"user_id": "u", "item_id": "b00", "rating": "five"}]}, 422, "rating"),
    ]
    for route, body, status, message in cases:
        r = client.post(f"{URL}/{route}", json=body, headers=h)
        assert (r.status_code, message in r.text) == (status, True), (route, str(body)[:80], r.text[:300])
    other = client.post(f"{URL}/recommend", json={"user_id": "u0"}, headers=auth(keys["globex"]))
    assert other.status_code == 404 and "not set up for this tenant" in other.text
    assert client.post(f"{URL}/recommend", json={"user_id": "u0"}).status_code == 401
    assert usage(db) == []  # refused calls are not billed
    assert len(client.post(f"{URL}/recommend", json={"history": ["b00"], "k": 100}, headers=h).json()[
        "recommendations"]) == 35  # every item but the seen one: no data lost by the refused additions


def test_concurrent_item_posts_lose_nothing(client, keys, built_app):
    h = auth(keys["acme"])
    start = threading.Barrier(2)

    def post(prefix: str) -> list[int]:
        start.wait()
        return [client.post(f"{URL}/items", headers=h, json={"items": [{"id": f"{prefix}{n}", "title": f"B {n}"}]})
                .status_code for n in range(3)]

    results: dict[str, list[int]] = {}
    threads = [threading.Thread(target=lambda p=p: results.setdefault(p, post(p))) for p in "xy"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"x": [200] * 3, "y": [200] * 3}
    entries = json.loads((built_app.directory / "index" / "index.json").read_text())["count"]
    assert entries == 36 + 6


def test_missing_version_and_unbuilt_state_are_503(encoder, recommend_config, settings, keys, db):
    settings.apps = [recommend_config(models={"encoder": {"name": "shop-encoder", "version": "v404"}})]
    with TestClient(create_app(settings)) as client:
        r = client.post(f"{URL}/recommend", json={"user_id": "u0"}, headers=auth(keys["acme"]))
    assert r.status_code == 503 and "models.encoder: model 'shop-encoder' has no alias or version 'v404'" in r.text
    settings.apps = [recommend_config("fresh.yaml", state_dir="nothing-here")]
    with TestClient(create_app(settings)) as client:
        r = client.post(f"{URL}/recommend", json={"user_id": "u0"}, headers=auth(keys["acme"]))
    assert r.status_code == 503 and "holds no recommender yet" in r.text
    assert usage(db) == []


def test_through_a_real_server(built_app, recommend_config, settings, keys, db, start_server):
    server = start_server(settings, GOLDMINE_APPS=json.dumps([str(recommend_config())]))
    h = auth(keys["acme"])
    r = httpx.post(f"{server.url}{URL}/items", headers=h, timeout=60,
                   json={"items": [NEW_BOOK.to_dict()]})
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
    r = httpx.post(f"{server.url}{URL}/recommend", headers=h, timeout=60,
                   json={"history": ["b10"], "k": 10, "filters": {"categories": ["Science fiction"]}})
    assert r.status_code == 200, r.text
    assert "new-1" in [a["item_id"] for a in r.json()["recommendations"]]
    assert httpx.post(f"{server.url}{URL}/recommend", headers=h, json={"user_id": "nobody"}).status_code == 404
    assert usage(db) == [("recommend", "shop-encoder", 1), ("recommend", "shop-encoder", 1)]
