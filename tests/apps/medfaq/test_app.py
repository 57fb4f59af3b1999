"""The medical FAQ as an app: its config (models by registry name), the Python API over the registry, the CLI,
the HTTP route (keys, tenants, limits, metering), privacy end to end through a real server, and bad input.

The retriever is the tiny random encoder registered as `medfaq-retriever` of tenant acme, with the five-entry FAQ
indexed on the registered version; with a threshold of 0.999 the FAQ answers exactly its own questions (cosine 1)
and hands everything else off, so each assertion is exact (see test_faq.py)."""

from __future__ import annotations

import json
import logging
import shutil

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from goldmine.apps.base import load_app_config
from goldmine.apps.medfaq import MedFaq, build_index, build_registered_index
from goldmine.apps.medfaq.config import DISCLAIMER
from goldmine.errors import ConfigError
from goldmine.serving.app import create_app
from goldmine.serving.db import UsageRecord
from goldmine.serving.registry import register

EXACT = 0.999
SECRETS = ["Dana Whitfield", "Whitfield", "04/12/1979", "00482913", "555-0134", "dana.w@example.com"]
PII_QUESTION = ("I'm Dana Whitfield (DOB 04/12/1979, MRN 00482913), call (617) 555-0134 or dana.w@example.com: "
                "how do i treat a sprained ankle")
MASKED = "I'm <NAME> (DOB <DATE>, MRN <MRN>), call <PHONE> or <EMAIL>: how do i treat a sprained ankle"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def medfaq_model(tmp_path, tiny_encoder, db, settings):
    """`medfaq-retriever` of tenant acme: the tiny encoder, registered without an index."""
    run = tmp_path / "retriever-run"
    shutil.copytree(tiny_encoder, run)
    return register(db, settings.registry_dir, "medfaq-retriever", run, "acme")


@pytest.fixture
def medfaq_config(tmp_path):
    """`medfaq_config(name, **fields)`: a medfaq app config file for acme naming `medfaq-retriever` and `faq`."""

    def write(name: str = "medfaq.yaml", **fields):
        config = {"app": "medfaq", "tenant": "acme",
                  "models": {"retriever": {"name": "medfaq-retriever", "version": "production", "index": "faq"}},
                  "threshold": EXACT, **fields}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture
def indexed(medfaq_model, medfaq_config, faq_file, db):
    """The default config's path, its index built on the registered version (what `build-index` does)."""
    path = medfaq_config()
    build_registered_index(load_app_config(path, "medfaq"), db, faq_file)
    return path


@pytest.fixture
def client(indexed, settings, keys):
    settings.apps = [indexed]
    with TestClient(create_app(settings)) as c:
        yield c


def everything_stored(db) -> str:
    """Every value of every table of the database, as one string."""
    with db.engine.connect() as connection:
        return " ".join(str(value) for table in inspect(connection).get_table_names()
                        for row in connection.execute(text(f'SELECT * FROM "{table}"')) for value in row)


def usage(db) -> list[tuple]:
    with db.session() as s:
        return [(u.app, u.model, u.items) for u in s.query(UsageRecord).order_by(UsageRecord.id)]


# ---- the app config and the Python API ---------------------------------------------------------------------------

def test_python_api_from_the_app_config(indexed, db, medfaq_model):
    config = load_app_config(indexed, "medfaq")
    assert config.models.retriever.index == "faq" and config.urgent_rules_file() is None
    faq = MedFaq.from_config(config, db)
    reply = faq.answer("how do i treat a sprained ankle")
    assert (reply.entry_id, reply.url, reply.handoff, reply.disclaimer) == (
        "sprain", "https://faq.example.org/sprain", None, DISCLAIMER)
    handed = faq.answer(PII_QUESTION)
    assert handed.handoff.reason == "low_confidence" and handed.masked_question == MASKED
    assert faq.answer("I have crushing chest pain").handoff.rule == "chest_pain"


def test_the_registered_index_is_rebuilt_whole(indexed, db, faq_file, tmp_path):
    config = load_app_config(indexed, "medfaq")
    smaller = tmp_path / "faq-small.jsonl"
    smaller.write_text(faq_file.read_text().splitlines()[0] + "\n")
    assert [e.id for e in build_registered_index(config, db, smaller).entries] == ["flu"]
    assert MedFaq.from_config(config, db).answer("how do i treat a sprained ankle").handoff.reason == \
        "low_confidence"


def test_a_missing_version_names_the_config_line(medfaq_model, medfaq_config, db, settings, keys):
    path = medfaq_config(models={"retriever": {"name": "medfaq-retriever", "version": "v404", "index": "faq"}})
    with pytest.raises(ConfigError, match=r"medfaq.yaml:4: models.retriever: model 'medfaq-retriever' has no alias "
                                          r"or version 'v404' \(versions: "):
        MedFaq.from_config(load_app_config(path), db)
    settings.apps = [path]
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/apps/medfaq/ask", json={"question": "hi"}, headers=auth(keys["acme"]))
    assert r.status_code == 503 and "models.retriever: model 'medfaq-retriever' has no alias or version 'v404'" \
        in r.text
    assert usage(db) == []


def test_bad_config_values_name_the_line(medfaq_config):
    path = medfaq_config(top_k=0, models={"retriever": {"name": "medfaq-retriever"}})
    with pytest.raises(ConfigError) as err:
        load_app_config(path)
    assert f"{path}:4: models.retriever.index: Field required" in str(err.value)
    assert f"{path}:7: top_k: Input should be greater than or equal to 1" in str(err.value)


def test_an_index_of_another_model_is_a_clear_error(medfaq_model, medfaq_config, faq_file, db, settings, keys,
                                                    tmp_path, tiny_model_dir):
    from goldmine.apps.medfaq.encoder import save_pretrained_encoder

    other = save_pretrained_encoder(tmp_path / "other", str(tiny_model_dir), 32)  # another max_length: digest
    build_index(other, faq_file, name="faq", out=medfaq_model.path + "/indexes/faq")
    path = medfaq_config()
    with pytest.raises(ConfigError) as err:
        MedFaq.from_config(load_app_config(path), db)
    message = str(err.value)
    assert message.startswith(f"{path}:4: models.retriever: the index 'faq' of medfaq-retriever version "
                              f"{medfaq_model.version} cannot be used: index 'faq' was built with another model")
    assert "goldmine app medfaq build-index FAQ.jsonl" in message and str(settings.registry_dir) not in message
    settings.apps = [path]
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/apps/medfaq/ask", json={"question": "hi"}, headers=auth(keys["acme"]))
    assert r.status_code == 503 and "medfaq.yaml:4: models.retriever: the index 'faq'" in r.text
    assert "built with another model" in r.text and str(tmp_path) not in r.text
    assert usage(db) == []


def test_a_bad_urgent_rule_names_its_file_and_line(indexed, medfaq_config, db, settings, keys, tmp_path):
    (tmp_path / "rules.yaml").write_text("rules:\n  - name: chest\n    message: Call 911.\n    patterns: ['(']\n")
    path = medfaq_config("bad-rules.yaml", urgent_rules="rules.yaml")
    with pytest.raises(ConfigError, match=r"rules.yaml:4: rules.0.patterns.0: '\(' is not a valid regular "):
        MedFaq.from_config(load_app_config(path), db)
    settings.apps = [path]
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/apps/medfaq/ask", json={"question": "hi"}, headers=auth(keys["acme"]))
    assert r.status_code == 503 and "rules.yaml:4: rules.0.patterns.0:" in r.text and str(tmp_path) not in r.text


def test_models_that_do_not_fit_their_field(indexed, medfaq_config, models, db):
    retriever = {"name": "medfaq-retriever", "index": "faq"}
    as_ner = medfaq_config("ner.yaml", models={"retriever": retriever, "ner": {"name": "intents"}})
    with pytest.raises(ConfigError, match=r"ner.yaml:\d+: models.ner: the masker's NER model must be a goldmine NER"):
        MedFaq.from_config(load_app_config(as_ner), db)
    as_reranker = medfaq_config("rr.yaml", models={"retriever": retriever, "reranker": {"name": "intents"}})
    with pytest.raises(ConfigError, match=r"rr.yaml:\d+: models.reranker: a re-ranker is a pair classification"):
        MedFaq.from_config(load_app_config(as_reranker), db)


def test_with_an_ner_model_and_a_reranker(indexed, medfaq_config, models, tiny_run, db, settings, keys):
    register(db, settings.registry_dir, "medfaq-pairs", tiny_run("pair"), "acme")
    path = medfaq_config("full.yaml", rerank_threshold=0.0, top_k=2, models={
        "retriever": {"name": "medfaq-retriever", "index": "faq"}, "ner": {"name": "tickets"},
        "reranker": {"name": "medfaq-pairs"}})
    faq = MedFaq.from_config(load_app_config(path), db)
    assert faq.masker.ner is not None and faq.reranker is not None and faq.threshold == 0.0
    reply = faq.answer("how do i treat a sprained ankle")
    assert reply.handoff is None and reply.score == reply.matches[0].rerank_score and len(reply.matches) == 2
    settings.apps = [path]
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/apps/medfaq/ask", json={"questions": [PII_QUESTION, "my chest hurts"]},
                        headers=auth(keys["acme"]))
    assert r.status_code == 200, r.text
    first, urgent = r.json()["replies"]
    assert not [s for s in SECRETS if s in first["masked_question"]] and first["matches"][0]["rerank_score"] >= 0
    assert urgent["handoff"]["rule"] == "chest_pain"
    assert usage(db) == [("medfaq", "medfaq-retriever", 2)]


# ---- HTTP ----------------------------------------------------------------------------------------------------------

def test_ask_over_http_is_metered(client, keys, db, medfaq_model):
    h = auth(keys["acme"])
    r = client.post("/v1/apps/medfaq/ask", json={"question": "how do i treat a sprained ankle"}, headers=h)
    assert r.status_code == 200, r.text
    one = r.json()
    assert (one["entry_id"], one["answer"], one["url"], one["disclaimer"]) == (
        "sprain", "Rest, ice, compression, elevation.", "https://faq.example.org/sprain", DISCLAIMER)
    assert one["request_id"].startswith("req_") and one["handoff"] is None
    r = client.post("/v1/apps/medfaq/ask", headers=h, json={"questions": [
        "is parkinson disease inherited", PII_QUESTION, "someone is unconscious and not breathing"]})
    assert r.status_code == 200, r.text
    replies = r.json()["replies"]
    assert [x["entry_id"] for x in replies] == ["parkinson", None, None]
    assert replies[1]["masked_question"] == MASKED and replies[1]["handoff"]["reason"] == "low_confidence"
    assert replies[2]["handoff"]["reason"] == "urgent" and replies[2]["matches"] == []
    assert usage(db) == [("medfaq", "medfaq-retriever", 1), ("medfaq", "medfaq-retriever", 3)]
    with db.session() as s:
        assert all(u.input_tokens > 0 and u.version == medfaq_model.version for u in s.query(UsageRecord))
    listed = client.get("/v1/apps", headers=h).json()
    assert [a["models"]["models.retriever"]["name"] for a in listed if a["name"] == "medfaq" and a["set_up"]] == [
        "medfaq-retriever"]


def test_bad_input_over_http(client, keys, db, settings, medfaq_config):
    h = auth(keys["acme"])
    too_many = ["how do i treat a sprained ankle"] * 17
    cases = [
        ({"question": "  "}, 422, "question is empty"),
        ({"question": "x" * 2001}, 413, "question has 2001 characters; the limit is 2000"),
        ({"questions": ["is parkinson disease inherited", ""]}, 422, "questions[1] is empty"),
        ({"questions": too_many}, 413, "17 questions in one call; this FAQ takes at most 16"),
        ({"questions": []}, 422, "questions: give at least one"),
        ({"question": None}, 422, "give either question (one) or questions (a batch)"),
        ({}, 422, "give either question (one) or questions (a batch)"),
        ({"question": "a", "questions": ["b"]}, 422, "give either question (one) or questions (a batch)"),
        ({"question": 12}, 422, "question"),
    ]
    for body, status, message in cases:
        r = client.post("/v1/apps/medfaq/ask", json=body, headers=h)
        assert (r.status_code, message in r.text) == (status, True), (body, r.text)
    other = client.post("/v1/apps/medfaq/ask", json={"question": "hi"}, headers=auth(keys["globex"]))
    assert other.status_code == 404 and "not set up for this tenant" in other.text
    assert client.post("/v1/apps/medfaq/ask", json={"question": "hi"}).status_code == 401
    assert usage(db) == []  # refused calls are not billed


def test_nothing_masked_reaches_logs_or_the_database_in_process(client, keys, db, caplog):
    caplog.set_level(logging.DEBUG)
    h = auth(keys["acme"])
    assert client.post("/v1/apps/medfaq/ask", json={"question": PII_QUESTION}, headers=h).status_code == 200
    refused = client.post("/v1/apps/medfaq/ask", json={"questions": [PII_QUESTION, " "]}, headers=h)
    long = client.post("/v1/apps/medfaq/ask", json={"question": PII_QUESTION * 20}, headers=h)
    assert (refused.status_code, long.status_code) == (422, 413)
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    stored = everything_stored(db)
    assert '"app": "medfaq"' in caplog.text and '"masked": {' in caplog.text
    for secret in SECRETS:
        assert secret not in logged and secret not in stored
        assert secret not in refused.text and secret not in long.text


def test_privacy_and_metering_through_a_real_server(indexed, settings, keys, db, start_server, tmp_path):
    """A real `goldmine serve` (request logging on, raw inputs logging on): what the masker hides is in no log line,
    no table and no error message; the call is billed on a usage record carrying the app's name."""
    server = start_server(settings, GOLDMINE_APPS=json.dumps([str(indexed)]), GOLDMINE_LOG_RAW_INPUTS="true")
    h = auth(keys["acme"])
    with httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.post("/v1/apps/medfaq/ask", json={"question": PII_QUESTION}, headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["masked_question"] == MASKED and r.json()["handoff"]["reason"] == "low_confidence"
        batch = http.post("/v1/apps/medfaq/ask", headers=h,
                          json={"questions": ["how do i treat a sprained ankle", PII_QUESTION]})
        assert [x["entry_id"] for x in batch.json()["replies"]] == ["sprain", None]
        errors = [http.post("/v1/apps/medfaq/ask", json=body, headers=h) for body in (
            {"question": PII_QUESTION * 20}, {"questions": [PII_QUESTION, ""]}, {"question": [PII_QUESTION]},
            {"questions": [PII_QUESTION] * 17})]
        assert [e.status_code for e in errors] == [413, 422, 422, 413]
        unauthorized = http.post("/v1/apps/medfaq/ask", json={"question": PII_QUESTION})
        assert unauthorized.status_code == 401
    server.stop()
    logs = server.log.read_text()
    assert '"app": "medfaq"' in logs and '"path": "/v1/apps/medfaq/ask"' in logs  # the request lines are there
    stored = everything_stored(db)
    raw = b"".join(p.read_bytes() for p in settings.data_dir.glob("goldmine.db*"))
    for secret in SECRETS:
        assert secret not in logs, secret
        assert secret not in stored, secret
        assert secret.encode() not in raw, secret
        assert not [e for e in [*errors, unauthorized] if secret in e.text], secret
    with db.session() as s:
        records = [(u.app, u.model, u.items, u.tenant_id) for u in s.query(UsageRecord).order_by(UsageRecord.id)]
    assert records == [("medfaq", "medfaq-retriever", 1, "acme"), ("medfaq", "medfaq-retriever", 2, "acme")]


# ---- CLI -----------------------------------------------------------------------------------------------------------

def serving_yaml(tmp_path, settings, apps) -> str:
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(settings.data_dir), "database_url": settings.url,
                                    "apps": [str(a) for a in apps]}))
    return str(path)


def test_cli_build_index_ask_and_mask(medfaq_model, medfaq_config, faq_file, settings, db, tmp_path):
    from goldmine.cli import app

    runner = CliRunner()
    config = serving_yaml(tmp_path, settings, [medfaq_config()])
    built = runner.invoke(app, ["app", "medfaq", "build-index", str(faq_file), "--config", config])
    assert built.exit_code == 0, built.output
    assert "index 'faq' of medfaq-retriever (production): 5 FAQ entries" in built.output
    asked = runner.invoke(app, ["app", "medfaq", "ask", "how do i treat a sprained ankle", "--config", config])
    assert asked.exit_code == 0, asked.output
    reply = json.loads(asked.stdout)
    assert (reply["entry_id"], reply["url"], reply["disclaimer"]) == ("sprain", "https://faq.example.org/sprain",
                                                                       DISCLAIMER)
    both = runner.invoke(app, ["app", "medfaq", "ask", PII_QUESTION, "my chest hurts", "--config", config])
    replies = json.loads(both.stdout)
    assert replies[0]["masked_question"] == MASKED and replies[1]["handoff"]["rule"] == "chest_pain"
    empty = runner.invoke(app, ["app", "medfaq", "ask", " ", "--config", config])
    assert empty.exit_code == 2 and "question is empty" in empty.output
    masked = runner.invoke(app, ["app", "medfaq", "mask", "Dr. Patel, MRN 00482913, call 555-123-4567"])
    assert masked.exit_code == 0, masked.output
    shown = json.loads(masked.stdout)
    assert shown["masked"] == "Dr. <NAME>, MRN <MRN>, call <PHONE>"
    assert [(f["kind"], f["text"]) for f in shown["found"]] == [
        ("name", "Patel"), ("mrn", "00482913"), ("phone", "555-123-4567")]
    listed = runner.invoke(app, ["app", "list", "--config", config])
    assert "medfaq: Medical FAQ with privacy" in listed.output


def test_cli_errors(medfaq_model, medfaq_config, faq_file, settings, db, tmp_path):
    from goldmine.cli import app

    runner = CliRunner()
    missing = medfaq_config("v404.yaml", models={"retriever": {"name": "medfaq-retriever", "version": "v404",
                                                               "index": "faq"}})
    config = serving_yaml(tmp_path, settings, [missing])
    failed = runner.invoke(app, ["app", "medfaq", "build-index", str(faq_file), "--config", config])
    assert failed.exit_code == 2 and "v404.yaml:4: models.retriever: model 'medfaq-retriever' has no alias" in \
        " ".join(failed.output.split())
    checked = runner.invoke(app, ["app", "check", str(missing), "--config", config])
    assert checked.exit_code == 2 and "v404.yaml:4: models.retriever" in " ".join(checked.output.split())
    no_index = runner.invoke(app, ["app", "medfaq", "ask", "hi", "--app-config", str(medfaq_config()), "--config",
                                   config])
    assert no_index.exit_code == 2 and "the index 'faq' of medfaq-retriever" in " ".join(no_index.output.split())
    bad_faq = tmp_path / "bad.jsonl"
    bad_faq.write_text('{"id": "a", "question": "q"}\n')
    broken = runner.invoke(app, ["app", "medfaq", "build-index", str(bad_faq), "--app-config", str(medfaq_config()),
                                 "--config", config])
    assert broken.exit_code == 2 and "bad.jsonl:1: no text in field(s) answer" in " ".join(broken.output.split())


def test_cli_demo_through_the_registry(tmp_path, tiny_encoder):
    from goldmine.cli import app

    out = tmp_path / "demo"
    shown = CliRunner().invoke(app, ["app", "medfaq", "demo", "--out", str(out), "--retriever", str(tiny_encoder)])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())  # rich wraps at the terminal's width
    assert "hand-off (urgent, rule chest_pain)" in text and "masked: Hi, I'm <NAME> (DOB <DATE>, MRN <MRN>)." in text
    config = load_app_config(out / "medfaq.yaml", "medfaq")
    assert config.tenant == "demo" and config.models.retriever.name == "medfaq-retriever"
    assert isinstance(config.threshold, float)
