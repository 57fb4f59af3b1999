"""`POST /v1/models/{name}/indexes/{index}/search`: a registered model's index, searched behind the same keys,
tenants and metering as predict; re-registering the model brings an updated index along."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from goldmine.retrieval.index import Entry, Index
from goldmine.serving.app import create_app
from goldmine.serving.db import UsageRecord
from goldmine.serving.registry import register

FAQ = [Entry("refund", "how do i get my money back", {"answer": "Orders, then Refund."}),
       Entry("track", "where is my parcel", {"answer": "Orders, then Track."})]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def faq_model(tiny_run, tmp_path, db, settings, models):
    run = shutil.copytree(tiny_run("classification"), tmp_path / "faq-run")
    Index.build(run, FAQ, name="faq")
    register(db, settings.registry_dir, "helpdesk", run, "acme")
    return run


@pytest.fixture
def client(settings, db, models, keys, faq_model):
    with TestClient(create_app(settings)) as c:
        yield c


def test_search_answers_with_the_nearest_entries_and_is_metered(client, keys, db):
    r = client.post("/v1/models/helpdesk/indexes/faq/search", json={"queries": ["where is my parcel"], "k": 2},
                    headers=auth(keys["acme"]))
    assert r.status_code == 200, r.text
    body = r.json()
    [result] = body["results"]
    assert result["hits"][0]["id"] == "track" and result["hits"][0]["payload"] == {"answer": "Orders, then Track."}
    assert result["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5) and len(result["hits"]) == 2
    assert body["index_version"] == 1
    with db.session() as s:
        [record] = list(s.query(UsageRecord))
    assert record.model == "helpdesk" and record.items == 1 and record.input_tokens > 0


@pytest.mark.parametrize(("path", "body", "key", "status"), [
    ("/v1/models/helpdesk/indexes/faq/search", {"queries": ["x"]}, None, 401),
    ("/v1/models/helpdesk/indexes/faq/search", {"queries": ["x"]}, "globex", 404),  # another tenant's model
    ("/v1/models/helpdesk/indexes/nope/search", {"queries": ["x"]}, "acme", 404),
    ("/v1/models/helpdesk/indexes/faq/search", {"queries": []}, "acme", 422),
    ("/v1/models/helpdesk/indexes/faq/search", {"queries": [" "]}, "acme", 422),
    ("/v1/models/helpdesk/indexes/faq/search", {"queries": ["x"], "k": 0}, "acme", 422),
    ("/v1/models/helpdesk/indexes/faq/search", {"queries": ["x" * 100_000]}, "acme", 413),
])
def test_bad_searches_are_refused_and_not_billed(client, keys, db, path, body, key, status):
    r = client.post(path, json=body, headers=auth(keys[key]) if key else {})
    assert r.status_code == status, r.text
    with db.session() as s:
        assert s.query(UsageRecord).count() == 0


def test_registering_again_brings_the_updated_index(client, keys, db, settings, faq_model):
    index = Index.load(faq_model / "indexes" / "faq")
    index.add([Entry("hours", "when are you open", {"answer": "9 to 5"})])
    again = register(db, settings.registry_dir, "helpdesk", faq_model, "acme")
    assert not again.created  # the same model version: indexes are not part of it
    r = client.post("/v1/models/helpdesk/indexes/faq/search", json={"queries": ["when are you open"], "k": 1},
                    headers=auth(keys["acme"]))
    assert r.status_code == 200, r.text
    assert r.json()["index_version"] == 2 and r.json()["results"][0]["hits"][0]["id"] == "hours"
    assert json.loads((faq_model / "indexes" / "faq" / "index.json").read_text())["count"] == 3


def test_a_cross_encoder_reranks_the_candidates_and_its_tokens_are_billed(client, keys, db, settings, tiny_run):
    register(db, settings.registry_dir, "matcher", tiny_run("pair"), "acme")
    plain = client.post("/v1/models/helpdesk/indexes/faq/search", json={"queries": ["where is my parcel"], "k": 2},
                        headers=auth(keys["acme"]))
    r = client.post("/v1/models/helpdesk/indexes/faq/search",
                    json={"queries": ["where is my parcel"], "k": 2, "rerank": {"model": "matcher", "candidates": 2}},
                    headers=auth(keys["acme"]))
    assert r.status_code == 200, r.text
    hits = r.json()["results"][0]["hits"]
    assert {h["id"] for h in hits} == {"track", "refund"}
    scores = [h["rerank_score"] for h in hits]
    assert all(0 <= s <= 1 for s in scores) and scores == sorted(scores, reverse=True)
    with db.session() as s:
        first, second = sorted(s.query(UsageRecord), key=lambda u: u.id)
    assert plain.status_code == 200 and second.input_tokens > first.input_tokens  # + the pairs it read


@pytest.mark.parametrize(("rerank", "status"), [
    ({"model": "helpdesk"}, 422),      # a single-text model is no cross-encoder
    ({"model": "nobody"}, 404),
    ({"model": "matcher", "match_label": "maybe"}, 422),
])
def test_a_bad_reranker_is_refused_and_not_billed(client, keys, db, settings, tiny_run, rerank, status):
    register(db, settings.registry_dir, "matcher", tiny_run("pair"), "acme")
    r = client.post("/v1/models/helpdesk/indexes/faq/search", json={"queries": ["x"], "rerank": rerank},
                    headers=auth(keys["acme"]))
    assert r.status_code == status, r.text
    with db.session() as s:
        assert s.query(UsageRecord).count() == 0
