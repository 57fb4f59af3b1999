"""The serving commands: models, keys, billing (serve itself is covered by test_server.py)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from goldmine import cli
from goldmine.serving.auth import authenticate
from goldmine.serving.db import open_database
from goldmine.serving.settings import load_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("GOLDMINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GOLDMINE_DATA_DIR", str(tmp_path / "serving"))
    monkeypatch.setattr(cli.console, "width", 400)
    monkeypatch.setattr(cli.err_console, "width", 400)


def invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def test_models_commands(tiny_run):
    run = tiny_run("classification")
    first = invoke("models", "register", "intents", run, "--tenant", "acme")
    assert first.exit_code == 0, first.output
    version = first.output.split("version ")[1].split()[0]
    assert f"intents version {version} registered (classification)" in first.output
    again = invoke("models", "register", "intents", run, "--tenant", "acme")
    assert f"version {version} already registered (same content)" in again.output
    listed = invoke("models", "list")
    assert f"intents (classification, tenant acme): production={version}" in listed.output
    assert invoke("models", "promote", "intents", version, "--alias", "staging").output.strip() == (
        f"intents staging: - -> {version}")
    bad = invoke("models", "rollback", "intents")
    assert bad.exit_code == 2 and "no earlier version to roll back to" in bad.output
    missing = invoke("models", "promote", "intents", "nope")
    assert missing.exit_code == 2 and "no alias or version 'nope'" in missing.output


def test_keys_commands(tmp_path):
    created = invoke("keys", "create", "--tenant", "acme", "--scopes", "predict,admin", "--rate", "5",
                     "--monthly-quota", "100")
    assert created.exit_code == 0, created.output
    key = [line for line in created.output.splitlines() if line.startswith("gm_")][0]
    db = open_database(load_settings())
    info = authenticate(db, key)
    assert (info.tenant, info.scopes, info.rate, info.monthly_quota) == ("acme", {"predict", "admin"}, 5, 100)
    listed = invoke("keys", "list")
    assert f"{info.id}  acme  admin,predict  rate=5.0  quota=100  active" in listed.output
    assert key.split("_", 2)[2] not in listed.output
    assert invoke("keys", "revoke", info.id).exit_code == 0
    assert "revoked" in invoke("keys", "list", "--tenant", "acme").output
    bad = invoke("keys", "create", "--tenant", "acme", "--scopes", "root")
    assert bad.exit_code == 2 and "scopes must be a comma-separated subset of predict, train, admin" in bad.output
    plan = invoke("keys", "create", "--tenant", "acme", "--plan", "gold")
    assert plan.exit_code == 2 and "--plan 'gold' is not a configured plan: default" in plan.output


def test_billing_report(tmp_path):
    from datetime import datetime

    from goldmine.serving.db import Tenant, UsageRecord

    db = open_database(load_settings())
    with db.session() as s:
        s.add(Tenant(id="acme", plan="default", created_at=datetime(2026, 1, 1)))
        for i in range(3):
            s.add(UsageRecord(request_id=f"r{i}", tenant_id="acme", key_id="k", model="m", version="v", items=1,
                              input_tokens=50_000, status=200, latency_ms=1, created_at=datetime(2026, 11, 2)))
    out = invoke("billing", "report", "--tenant", "acme", "--month", "2026-11")
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    # default plan: 10 minor units per 1k tokens, 100k free tokens -> 50k billable tokens -> 500
    assert rows[0]["calls"] == "3" and rows[0]["free_tokens"] == "100000" and rows[-1]["amount_minor"] == "500"
    js = invoke("billing", "report", "--tenant", "acme", "--month", "2026-11", "--format", "json",
                "--output", tmp_path / "inv.json")
    assert js.exit_code == 0 and json.loads((tmp_path / "inv.json").read_text())["total_minor"] == 500
    assert invoke("billing", "report", "--tenant", "acme", "--month", "11/2026").exit_code == 2
    assert "--format must be csv or json" in invoke("billing", "report", "--tenant", "acme", "--month", "2026-11",
                                                    "--format", "xml").output


def test_feedback_and_gate_commands(tiny_run, tmp_path):
    import shutil

    from goldmine.serving.feedback import answered_items

    run = tiny_run("classification")
    assert invoke("models", "register", "intents", run, "--tenant", "acme").exit_code == 0
    assert invoke("feedback", "keep-texts", "acme", "--on").output.strip() == "tenant acme: answered texts kept " \
                                                                               "(masked)"
    settings = load_settings()
    db = open_database(settings)
    version = invoke("models", "list").output.split("production=")[1].split()[0]
    write = answered_items(settings, "acme", "intents", version, "req_1", ["call me at 0171 2345678"],
                           [{"label": "card_lost", "score": 0.5}])
    with db.session() as session:
        write(session)
    db.dispose()
    given = invoke("feedback", "add", "intents", "req_1", "--label", "track_order")
    assert given.exit_code == 0 and "card_lost -> track_order (wrong, text kept)" in given.output, given.output
    unknown = invoke("feedback", "add", "intents", "req_2", "--correct")
    assert unknown.exit_code == 2 and "no answered item 0 of request 'req_2'" in unknown.output
    invalid = invoke("feedback", "add", "intents", "req_1", "--label", "trak_order")
    assert invalid.exit_code == 2 and '"trak_order" is not one of' in invalid.output
    assert f"{version}  1 feedback  1 corrections  accuracy 0.000" in invoke("feedback", "show", "intents").output
    assert "the gate has not run" in invoke("gate", "intents", "--show").output

    second = tmp_path / "v2"  # the same weights, another version: loses nothing, but gains nothing on feedback
    shutil.copytree(run, second)
    (second / "labels.json").write_text((second / "labels.json").read_text() + "\n")
    v2 = invoke("models", "register", "intents", second, "--tenant", "acme").output.split("version ")[1].split()[0]
    gate = invoke("gate", "intents", v2)
    assert gate.exit_code == 1 and f"candidate {v2} vs live {version}: FAILED" in gate.output, gate.output
    assert "ok   frozen set accuracy" in gate.output and "ok   forgetting" in gate.output
    assert "FAIL feedback not trained on: accuracy: candidate 0.0000  live 0.0000  needed > 0.0000  (n=1)" \
        in gate.output
    assert invoke("gate", "intents", "--show").output in gate.output  # (after the INFO log line)
    refused = invoke("models", "promote", "intents", v2)
    assert refused.exit_code == 2 and "failed the regression gate" in refused.output
    promoted = invoke("models", "promote", "intents", v2, "--force")
    assert promoted.exit_code == 0 and f"intents production: {version} -> {v2}" in promoted.output


def test_retrain_command(tiny_run, demo_files):
    from goldmine.serving.feedback import answered_items

    assert invoke("models", "register", "intents", tiny_run("classification"), "--tenant", "acme").exit_code == 0
    settings = load_settings()
    db = open_database(settings)
    version = invoke("models", "list").output.split("production=")[1].split()[0]
    rows = list(csv.DictReader(io.StringIO(demo_files.intents.read_text())))[:4]
    write = answered_items(settings, "acme", "intents", version, "req_1", [r["text"] for r in rows],
                           [{"label": "card_lost", "score": 0.5}] * 4)
    with db.session() as session:
        write(session)
    db.dispose()
    for position, row in enumerate(rows):
        given = invoke("feedback", "add", "intents", "req_1", "--label", row["label"], "--position", position,
                       "--text", row["text"])
        assert given.exit_code == 0 and "text kept" in given.output, given.output
    result = invoke("retrain", "intents", "--tolerance", "1")
    assert result.exit_code == 0, result.output
    assert "training examples + 4 feedback on 4 texts" in result.output
    assert "registered as candidate (trained from " + version in result.output
    assert "gate intents: candidate " in result.output and "ok   frozen set accuracy" in result.output
