"""The customer-service assistant: hand-off rules in order, answers of the predicted intent, entities per intent,
conversations stored with personal data masked, corrections, the HTTP routes (metered, 404/413/422/503), the
Python API, the CLI and the offline demo."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from goldmine.apps.base import load_app_config
from goldmine.apps.support.assistant import Assistant, mark_wrong, respond
from goldmine.apps.support.demo import ANSWERS, response_entries, run_demo
from goldmine.apps.support.entities import mask_message, pattern_entities
from goldmine.errors import ConfigError, InputError
from goldmine.retrieval.index import Hit, Index
from goldmine.serving.app import create_app
from goldmine.serving.db import UsageRecord
from goldmine.serving.errors import NotFound
from goldmine.serving.registry import register

SECRETS = ["jane.doe@example.com", "+49 151 2345678", "GM-31337", "55120"]
PII_MESSAGE = "Refund for order GM-31337 and #55120 please, mail jane.doe@example.com or call +49 151 2345678"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def support_model(tmp_path, tiny_run, demo_files, db, settings):
    """`support-intents` of tenant acme: the tiny intent run with a `responses` index over the demo answers."""
    run = tmp_path / "support-run"
    shutil.copytree(tiny_run("classification"), run)
    Index.build(run, response_entries(demo_files.intents), name="responses")
    return register(db, settings.registry_dir, "support-intents", run, "acme")


@pytest.fixture
def support_config(tmp_path):
    """`support_config(**fields)`: a support app config file for acme naming `support-intents` and its index."""

    def write(name: str = "support.yaml", **fields):
        config = {"app": "support", "tenant": "acme",
                  "models": {"intent": {"name": "support-intents"},
                             "responses": {"name": "support-intents", "index": "responses"}},
                  "threshold": 0.0, "complaint_intents": [], "human_intents": [], **fields}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture
def client(support_model, support_config, settings, keys):
    settings.apps = [support_config()]
    with TestClient(create_app(settings)) as c:
        yield c


def stored_text(db) -> str:
    """Every value of every support table, as one string."""
    with db.engine.connect() as connection:
        return " ".join(str(value) for table in ("support_conversations", "support_turns", "support_corrections")
                        for row in connection.execute(text(f"SELECT * FROM {table}")) for value in row)


# ---- the decision -------------------------------------------------------------------------------------------------

def config_of(support_config, **fields):
    return load_app_config(support_config(**{"threshold": 0.5, **fields}))


def hit(entry_id: str, intent: str, answer: str) -> Hit:
    return Hit(entry_id, "q", 0.9, {"intent": intent, "answer": answer})


def test_handoff_rules_in_order(support_config):
    config = config_of(support_config, complaint_intents=["delivery_delay_complaint"], human_intents=["talk_to_human"])
    sure = {"label": "track_order", "score": 0.9}
    hits = [hit("1", "track_order", "Follow the link.")]

    def reason(message, prediction=sure, found=hits):
        handoff = respond(config, message, prediction, found, None)["handoff"]
        return handoff and handoff["reason"]

    assert reason("where is my parcel") is None
    assert reason("This is unacceptable, let me talk to a real person") == "asked_for_human"  # phrases first
    assert reason("I want to speak to an agent", {"label": "oos", "score": 0.99}) == "asked_for_human"
    assert reason("this is a scam", {"label": "oos", "score": 0.99}) == "complaint"
    assert reason("humane question", {"label": "track_order", "score": 0.9}) is None  # whole words only
    assert reason("what is the weather", {"label": "oos", "score": 0.99}) == "out_of_scope"
    assert reason("what", {"label": "track_order", "closest_label": "x", "out_of_scope": True, "score": 0.2}) == \
        "out_of_scope"
    assert reason("late again", {"label": "delivery_delay_complaint", "score": 0.9}) == "complaint"
    assert reason("can someone call", {"label": "talk_to_human", "score": 0.2}) == "asked_for_human"
    assert reason("hmm", {"label": "track_order", "score": 0.49}) == "low_confidence"
    assert reason("hmm", found=[hit("2", "cancel_order", "Cancel it.")]) == "no_answer"
    reply = respond(config, "late", {"label": "delivery_delay_complaint", "score": 0.9}, hits, None)
    assert reply["answer"] is None and reply["handoff"] == {
        "reason": "complaint", "message": "I am sorry about this. A colleague will take over your case right away."}


def test_answer_is_the_nearest_entry_of_the_predicted_intent(support_config):
    config = config_of(support_config, answers={"reset_password": "Use the reset link."})
    hits = [hit("a", "cancel_order", "Cancel it."), hit("b", "track_order", "Follow the link."),
            hit("c", "track_order", "Other.")]
    reply = respond(config, "where is it", {"label": "track_order", "score": 0.8}, hits, None)
    assert (reply["answer"], reply["answer_id"], reply["handoff"]) == ("Follow the link.", "b", None)
    fixed = respond(config, "pw", {"label": "reset_password", "score": 0.8}, hits, None)
    assert (fixed["answer"], fixed["answer_id"]) == ("Use the reset link.", None)


def test_entities_only_for_the_intents_that_need_them(support_config):
    config = config_of(support_config, entity_intents={"refund_request": ["order_number", "amount", "date"],
                                                       "*": ["email"]})
    message = "Refund $45.99 for order #55120 from March 3, I am Anna Rossi, anna@example.com"
    at = message.index("Anna Rossi")
    ner = [{"type": "PER", "text": "Anna Rossi", "start": at, "end": at + 10, "score": 0.9},
           {"type": "LOC", "text": "x", "start": 0, "end": 1}]
    reply = respond(config, message, {"label": "refund_request", "score": 0.9}, [hit("1", "refund_request", "ok")],
                    ner)
    assert [(e["type"], e["text"]) for e in reply["entities"]] == [
        ("amount", "$45.99"), ("order_number", "#55120"), ("date", "March 3"), ("email", "anna@example.com")]
    assert all(message[e["start"]:e["end"]] == e["text"] for e in reply["all_entities"])
    assert ("name", "Anna Rossi") in [(e["type"], e["text"]) for e in reply["all_entities"]]
    other = respond(config, message, {"label": "track_order", "score": 0.9}, [], ner)
    assert [e["type"] for e in other["entities"]] == ["email"]
    masked = mask_message(message, reply["all_entities"])
    assert masked == "Refund $45.99 for order <order_number> from March 3, I am <name>, <email>"


def test_patterns_and_masking():
    found = pattern_entities("order 123456, GM-31337 on 2026-11-02, 20 EUR, call 555-123-4567; card 4111 1111 1111 "
                             "1111")
    assert [(e["type"], e["text"]) for e in found] == [
        ("order_number", "123456"), ("order_number", "GM-31337"), ("date", "2026-11-02"), ("amount", "20 EUR"),
        ("phone", "555-123-4567")]
    assert mask_message("card 4111 1111 1111 1111 iban DE89370400440532013000", []) == "card <card> iban <iban>"


# ---- over HTTP ----------------------------------------------------------------------------------------------------

def test_conversation_over_http_is_masked_and_metered(client, keys, db, support_model):
    h = auth(keys["acme"])
    r = client.post("/v1/apps/support/messages", json={"message": PII_MESSAGE}, headers=h)
    assert r.status_code == 200, r.text
    first = r.json()
    assert set(first) >= {"conversation_id", "turn_id", "intent", "score", "out_of_scope", "answer", "entities",
                          "handoff", "request_id"}
    if first["handoff"] is None:  # the answer belongs to the predicted intent
        assert first["answer"] in ANSWERS[first["intent"]]
    else:
        assert first["answer"] is None and first["handoff"]["reason"] in ("out_of_scope", "no_answer")
    r = client.post("/v1/apps/support/messages", headers=h,
                    json={"conversation_id": first["conversation_id"], "message": "I want to talk to a human"})
    second = r.json()
    assert second["conversation_id"] == first["conversation_id"] and second["turn_id"] == first["turn_id"] + 1
    assert second["handoff"]["reason"] == "asked_for_human" and second["answer"] is None
    stored = stored_text(db)
    assert not [s for s in SECRETS if s in stored], stored  # no personal data in clear
    shown = client.get(f"/v1/apps/support/conversations/{first['conversation_id']}", headers=h).json()
    assert [t["turn_id"] for t in shown["turns"]] == [first["turn_id"], second["turn_id"]]
    assert shown["turns"][0]["message"] == ("Refund for order <order_number> and <order_number> please, mail <email> "
                                            "or call <phone>")
    assert shown["turns"][1]["handoff_reason"] == "asked_for_human"
    with db.session() as s:
        usage = [(u.app, u.model, u.version, u.items) for u in s.query(UsageRecord).order_by(UsageRecord.id)]
    assert usage == [("support", "support-intents", support_model.version, 1)] * 2 + [("support", "", "", 0)]


def test_corrections_are_stored_masked(client, keys, db):
    h = auth(keys["acme"])
    turn = client.post("/v1/apps/support/messages", json={"message": "where is order #55120"}, headers=h).json()
    r = client.post(f"/v1/apps/support/turns/{turn['turn_id']}/correction", headers=h,
                    json={"correct_intent": "track_order", "correct_answer": "Sent to jane.doe@example.com",
                          "agent": "maria"})
    assert r.status_code == 200 and r.json()["turn_id"] == turn["turn_id"], r.text
    [correction] = client.get(f"/v1/apps/support/conversations/{turn['conversation_id']}",
                              headers=h).json()["turns"][0]["corrections"]
    assert (correction["correct_intent"], correction["correct_answer"], correction["agent"]) == (
        "track_order", "Sent to <email>", "maria")
    assert "jane.doe" not in stored_text(db) and "55120" not in stored_text(db)
    from goldmine.apps.support.store import corrections

    assert corrections(db, "acme") == [{"turn_id": turn["turn_id"], "text": "where is order <order_number>",
                                        "predicted_intent": turn["intent"], "intent": "track_order",
                                        "answer": "Sent to <email>", "agent": "maria"}]


def test_bad_input(client, keys, db, settings):
    h = auth(keys["acme"])
    limit = settings.limits.max_chars_per_text
    cases = [
        ("post", "/v1/apps/support/messages", {"message": "  "}, 422, "message is empty"),
        ("post", "/v1/apps/support/messages", {"message": "x" * (limit + 1)}, 413, f"message has {limit + 1} "),
        ("post", "/v1/apps/support/messages", {}, 422, "message"),
        ("post", "/v1/apps/support/messages", {"conversation_id": "nope", "message": "hi"}, 404,
         "no conversation 'nope'"),
        ("get", "/v1/apps/support/conversations/nope", None, 404, "no conversation 'nope'"),
        ("post", "/v1/apps/support/turns/999/correction", {"correct_intent": "x", "agent": "a"}, 404, "no turn 999"),
    ]
    for method, path, body, status, message in cases:
        r = client.request(method.upper(), path, json=body, headers=h)
        assert (r.status_code, message in r.text) == (status, True), (path, body, r.text)
    turn = client.post("/v1/apps/support/messages", json={"message": "hello"}, headers=h).json()
    r = client.post(f"/v1/apps/support/turns/{turn['turn_id']}/correction", json={"agent": "a"}, headers=h)
    assert r.status_code == 422 and "give correct_intent or correct_answer" in r.text
    other = client.get(f"/v1/apps/support/conversations/{turn['conversation_id']}", headers=auth(keys["globex"]))
    assert other.status_code == 404 and "not set up for this tenant" in other.text
    with db.session() as s:
        assert s.query(UsageRecord).count() == 1  # only "hello": refused calls are not billed


def test_config_naming_a_missing_version(support_model, support_config, settings, db, keys):
    settings.apps = [support_config(models={"intent": {"name": "support-intents", "version": "v404"}})]
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/apps/support/messages", json={"message": "hi"}, headers=auth(keys["acme"]))
    assert r.status_code == 503 and "models.intent: model 'support-intents' has no alias or version 'v404'" in r.text
    with pytest.raises(ConfigError, match=r"support.yaml:4: models.intent: model 'support-intents' has no alias"):
        Assistant.from_config(load_app_config(settings.apps[0]), db)


# ---- Python API, CLI, demo ----------------------------------------------------------------------------------------

def test_python_api(support_model, support_config, db):
    helper = Assistant.from_config(load_app_config(support_config()), db)
    reply = helper.handle(None, PII_MESSAGE)
    assert reply["turn_id"] and reply["conversation_id"]
    again = helper.handle(reply["conversation_id"], "let me speak to a representative")
    assert again["handoff"]["reason"] == "asked_for_human"
    assert helper.mark_wrong(again["turn_id"], correct_intent="talk_to_human", agent="li")["correction_id"] == 1
    assert len(helper.conversation(reply["conversation_id"])["turns"]) == 2
    with pytest.raises(NotFound):
        helper.handle("missing", "hi")
    with pytest.raises(InputError, match="message is empty"):
        helper.handle(None, "")
    with pytest.raises(NotFound):
        mark_wrong(db, helper.config, 12345, correct_intent="x", agent="li")
    assert not [s for s in SECRETS if s in stored_text(db)]


def test_cli_ask_and_correct(support_model, support_config, settings, db, tmp_path):
    from goldmine.cli import app

    serving = tmp_path / "serving.yaml"
    serving.write_text(yaml.safe_dump({"data_dir": str(settings.data_dir), "database_url": settings.url,
                                       "apps": [str(support_config())]}))
    runner = CliRunner()
    asked = runner.invoke(app, ["app", "support", "ask", "I want a human", "--config", str(serving)])
    assert asked.exit_code == 0, asked.output
    reply = json.loads(asked.output)
    assert reply["handoff"]["reason"] == "asked_for_human"
    corrected = runner.invoke(app, ["app", "support", "correct", str(reply["turn_id"]), "--intent", "talk_to_human",
                                    "--agent", "li", "--config", str(serving)])
    assert corrected.exit_code == 0 and json.loads(corrected.output)["correction_id"] == 1
    missing = runner.invoke(app, ["app", "support", "ask", "hi", "--conversation", "nope", "--config", str(serving)])
    assert missing.exit_code == 2 and "no conversation 'nope'" in missing.output


def test_demo_runs_offline(tmp_path, tiny_model_dir):
    replies = run_demo(tmp_path / "demo", base_model=str(tiny_model_dir), steps=2)
    assert len(replies) == 4 and len({r["conversation_id"] for r in replies}) == 1
    assert replies[2]["handoff"]["reason"] == "asked_for_human"
    assert all(r["answer"] is None or r["answer"] in ANSWERS[r["intent"]] for r in replies)
    assert (tmp_path / "demo" / "support.yaml").is_file()
    from goldmine.cli import app

    again = CliRunner().invoke(app, ["app", "support", "demo", "--out", str(tmp_path / "demo"), "--base-model",
                                     str(tiny_model_dir), "--steps", "2"])  # the run is there: no training
    assert again.exit_code == 0, again.output
    shown = " ".join(again.output.split())  # rich wraps at the terminal's width
    assert "(hand-off: asked_for_human)" in shown and "customer: What is the weather like on Mars?" in shown


def test_with_an_ner_model(support_model, support_config, models, settings, db, keys):
    refs = {"intent": {"name": "support-intents"}, "ner": {"name": "tickets"}}  # no index: fixed answers only
    settings.apps = [support_config(models=refs, answers={i: a[0] for i, a in ANSWERS.items()})]
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/apps/support/messages", json={"message": PII_MESSAGE}, headers=auth(keys["acme"]))
    assert r.status_code == 200, r.text
    assert r.json()["answer"] in (None, ANSWERS.get(r.json()["intent"], [None])[0])
    helper = Assistant.from_config(load_app_config(settings.apps[0]), db)
    assert helper.ner_model is not None and helper.index is None
    helper.handle(None, "Anna Rossi here, order #55120")
    with db.session() as s:
        assert s.query(UsageRecord).one().input_tokens > 0  # the intent and NER models' tokens
    assert not [s for s in [*SECRETS, "55120"] if s in stored_text(db)]
    swapped = {"intent": {"name": "support-intents"}, "ner": {"name": "intents"}}  # a classifier as NER
    settings.apps = [support_config("swapped.yaml", models=swapped)]
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/apps/support/messages", json={"message": "hi"}, headers=auth(keys["acme"]))
    assert r.status_code == 503 and "models.ner: model 'intents' is not an NER model" in r.text
