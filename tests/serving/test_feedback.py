"""Feedback on answered calls: stored with the item it refers to, tenant-scoped (404), labels checked (422), texts
kept only when the tenant allows it (masked), purged after retention; and the automatic rollback it drives."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from goldmine.serving.app import create_app
from goldmine.serving.db import AnsweredItem, Feedback, ModelAlias, utcnow
from goldmine.serving.feedback import purge_answered, set_keep_texts, text_digest
from goldmine.serving.registry import promote, register
from goldmine.serving.settings import load_settings


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def fb_settings(settings):
    return load_settings(data_dir=settings.data_dir, database_url=settings.url, preload=False, inference_threads=1,
                         feedback={"rollback_min_feedback": 3, "rollback_margin": 0.2})


@pytest.fixture
def client(fb_settings, db, models, keys):
    with TestClient(create_app(fb_settings)) as c:
        yield c


def ask(client, key: str, texts: list[str], model: str = "intents", version: str | None = None) -> dict:
    params = {"version": version} if version else {}
    response = client.post(f"/v1/models/{model}/predict", json={"texts": texts}, params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def test_feedback_is_stored_with_the_answered_item(client, keys, db):
    answer = ask(client, keys["acme"], ["where is my parcel", "cancel my order"])
    rid, predicted = answer["request_id"], answer["predictions"][1]["label"]
    with db.session() as session:
        items = session.query(AnsweredItem).filter_by(request_id=rid).order_by(AnsweredItem.position).all()
    assert [(i.position, i.label, i.tenant_id, i.model, i.version) for i in items] == [
        (p, answer["predictions"][p]["label"], "acme", "intents", answer["version"]) for p in (0, 1)]
    assert items[1].text is None and items[1].text_sha256 == text_digest(rid, 1, "cancel my order")
    other = next(label for label in answer["predictions"][1]["scores"] if label != predicted)
    response = client.post("/v1/models/intents/feedback", json={"request_id": rid, "position": 1, "label": other},
                           headers=auth(keys["acme"]))
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["predicted"], body["label"], body["correct"], body["text_kept"], body["version"]) == (
        predicted, other, False, False, answer["version"])
    again = client.post("/v1/models/intents/feedback", json={"request_id": rid, "position": 1, "correct": True},
                        headers=auth(keys["acme"])).json()  # a second feedback on the item replaces the first
    assert (again["id"], again["label"], again["correct"]) == (body["id"], predicted, True)
    summary = client.get("/v1/models/intents/feedback", headers=auth(keys["acme"])).json()["versions"]
    assert [(v["version"], v["feedback"], v["corrections"], v["accuracy"]) for v in summary] == [
        (answer["version"], 1, 0, 1.0)]


def test_unknown_foreign_or_invalid_feedback_is_refused(client, keys):
    rid = ask(client, keys["acme"], ["where is my parcel"])["request_id"]
    theirs = ask(client, keys["globex"], ["hello"], model="other")["request_id"]
    label = "track_order"

    def give(model: str, key: str, **body):
        return client.post(f"/v1/models/{model}/feedback", json={"label": label, **body}, headers=auth(keys[key]))

    assert give("intents", "acme", request_id="req_nope").status_code == 404
    assert give("intents", "acme", request_id=rid, position=1).status_code == 404  # one text only
    assert give("intents", "acme", request_id=theirs).status_code == 404  # another tenant's request id
    assert give("other", "acme", request_id=theirs).status_code == 404  # another tenant's model
    assert give("intents", "globex", request_id=rid).status_code == 404  # acme's model, seen from globex
    assert give("other", "globex", request_id=rid).status_code == 404  # acme's request, on globex's model
    assert give("nope", "acme", request_id=rid).status_code == 404
    bad = give("intents", "acme", request_id=rid, label="track_ordr")
    assert bad.status_code == 422 and '"track_ordr"' in bad.json()["error"]["message"]
    assert 'did you mean "track_order"' in bad.json()["error"]["message"]
    both = client.post("/v1/models/intents/feedback", json={"request_id": rid, "label": label, "correct": True},
                       headers=auth(keys["acme"]))
    assert both.status_code == 422 and "correct" in both.json()["error"]["message"]
    wrong_text = give("intents", "acme", request_id=rid, text="where is my parcel?")
    assert wrong_text.status_code == 422 and "text" in wrong_text.json()["error"]["message"]
    assert give("intents", "acme", request_id=rid).status_code == 201


def test_texts_are_kept_masked_only_when_the_tenant_allows_it(client, keys, db):
    mail = "my mail is ines.okafor60@example.com, where is my parcel"
    first = ask(client, keys["acme"], [mail])["request_id"]
    with db.session() as session:
        assert session.get(AnsweredItem, (first, 0)).text is None  # off by default: only the hash
    given = client.post("/v1/models/intents/feedback", json={"request_id": first, "label": "track_order",
                                                             "text": mail}, headers=auth(keys["acme"])).json()
    assert given["text_kept"]  # the client sent the very text: kept with the feedback, masked
    set_keep_texts(db, "acme", True)
    second = ask(client, keys["acme"], [mail])["request_id"]
    client.post("/v1/models/intents/feedback", json={"request_id": second, "correct": True},
                headers=auth(keys["acme"]))
    with db.session() as session:
        kept = {row.request_id: row.text for row in session.query(Feedback)}
        assert session.get(AnsweredItem, (second, 0)).text == "my mail is <email>, where is my parcel"
    assert kept == {first: "my mail is <email>, where is my parcel", second: "my mail is <email>, where is my parcel"}


def test_answered_items_are_purged_after_retention(client, keys, db, fb_settings):
    rid = ask(client, keys["acme"], ["where is my parcel"])["request_id"]
    assert purge_answered(db, fb_settings) == 0
    assert purge_answered(db, fb_settings, now=utcnow() + timedelta(days=91)) == 1
    response = client.post("/v1/models/intents/feedback", json={"request_id": rid, "correct": True},
                           headers=auth(keys["acme"]))
    assert response.status_code == 404


def test_live_accuracy_falling_rolls_the_alias_back_once(client, keys, db, settings, tiny_run, tmp_path, caplog):
    second = tmp_path / "v2"
    shutil.copytree(tiny_run("classification"), second)
    (second / "labels.json").write_text((second / "labels.json").read_text() + "\n")
    v1 = ask(client, keys["acme"], ["x"])["version"]
    v2 = register(db, settings.registry_dir, "intents", second, "acme").version
    promote(db, "intents", v2)  # (the gate is tested in test_gate.py)
    client.app.state.services.versions.invalidate()

    def feedback(version: str, right: bool) -> dict:
        answer = ask(client, keys["acme"], ["where is my parcel"], version=version)
        predicted = answer["predictions"][0]["label"]
        label = predicted if right else next(x for x in answer["predictions"][0]["scores"] if x != predicted)
        response = client.post("/v1/models/intents/feedback", json={"request_id": answer["request_id"],
                                                                    "label": label}, headers=auth(keys["acme"]))
        assert response.status_code == 201, response.text
        return response.json()

    for _ in range(3):
        assert feedback(v1, right=True)["rolled_back"] is None
    assert feedback(v2, right=False)["rolled_back"] is None
    assert feedback(v2, right=True)["rolled_back"] is None  # 2 of v2: fewer than rollback_min_feedback
    with caplog.at_level("ERROR", logger="goldmine.serving.autorollback"):
        rolled = feedback(v2, right=False)["rolled_back"]  # v2: 1/3 right, v1: 3/3, margin 0.2
    assert rolled["version"] == v2 and rolled["previous"] == v1 and rolled["count"] == 3
    assert any("automatic rollback of intents production" in r.message for r in caplog.records)
    with db.session() as session:
        assert session.get(ModelAlias, ("intents", "production")).version == v1
    assert ask(client, keys["acme"], ["x"])["version"] == v1  # this server follows at once
    metrics = client.get("/metrics").text
    assert 'goldmine_feedback_rollbacks_total{model="intents"} 1.0' in metrics
    assert feedback(v2, right=False)["rolled_back"] is None  # once: the alias's latest change is a rollback
    with db.session() as session:
        assert session.get(ModelAlias, ("intents", "production")).version == v1
