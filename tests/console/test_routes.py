"""The console's pages through a TestClient: sign-in and sessions (logout, revoked keys, tampered cookies), CSRF on
every POST, tenant scoping (another tenant's ids read 404), escaping of what it renders, and the admin-only actions."""

from __future__ import annotations

import json

import pytest

from goldmine.serving.auth import create_key, revoke_key
from goldmine.serving.db import GateReport, ModelVersion, utcnow

from .conftest import csrf_of

SCRIPT = "<script>alert('owned')</script>"
PAGES = ["/", "/datasets", "/jobs", "/models", "/playground", "/keys", "/usage", "/monitoring"]


def upload(client, name: str, content: bytes, token: str | None = None):
    token = token if token is not None else csrf_of(client.get("/console/datasets").text)
    return client.post("/console/datasets/upload", params={"name": name}, content=content,
                       headers={"X-CSRF-Token": token, "Content-Type": "application/octet-stream"})


def intents_csv(extra: str = "") -> bytes:
    rows = ["text,label"] + [f"where is my parcel number {i},track_order" for i in range(6)] \
        + [f"i want my money back for order {i},refund_request" for i in range(6)] + [extra] * 2
    return ("\n".join(r for r in rows if r) + "\n").encode()


def test_every_page_needs_a_session_and_renders_after_sign_in(browser, keys):
    anonymous = browser(None)
    for page in PAGES:
        response = anonymous.get(f"/console{page}")
        assert (response.status_code, response.headers["location"]) == (303, "/console/login"), page
    client = browser(keys["acme"])
    for page in PAGES:
        response = client.get(f"/console{page}")
        assert response.status_code == 200, (page, response.text[-500:])
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"
    cookie = next(c for c in client.cookies.jar if c.name == "gm_console")
    assert keys["acme"].split("_", 2)[2] not in cookie.value  # the cookie names the key id, never the secret
    assert cookie.path == "/console" and cookie.has_nonstandard_attr("HttpOnly")


def test_a_wrong_key_or_a_missing_csrf_token_does_not_sign_in(browser, keys):
    client = browser(None)
    token = csrf_of(client.get("/console/login").text)
    response = client.post("/console/login", data={"key": "gm_nope_nope", "csrf": token})
    assert response.status_code == 401 and "invalid API key" in response.text
    response = client.post("/console/login", data={"key": keys["acme"], "csrf": "forged"})
    assert response.status_code == 403 and "gm_console" not in response.headers.get("set-cookie", "")
    assert client.get("/console/").status_code == 303


def test_every_form_post_needs_the_sessions_csrf_token(browser, keys, models):
    client = browser(keys["admin"])
    posts = ["/logout", "/jobs", "/jobs/job_x/cancel", "/datasets/" + "0" * 64 + "/delete", "/models/intents/promote",
             "/models/intents/rollback", "/playground", "/keys", "/keys/abc/revoke"]
    other = browser(keys["acme"])  # a token of another session is no better than none
    foreign_token = csrf_of(other.get("/console/jobs").text)
    for path in posts:
        for data in ({}, {"csrf": foreign_token}):
            response = client.post(f"/console{path}", data=data)
            assert response.status_code == 403, (path, response.status_code)
    assert upload(client, "a.csv", intents_csv(), token="").status_code == 403
    assert upload(client, "a.csv", intents_csv(), token=foreign_token).status_code == 403
    assert client.get("/console/").status_code == 200  # still signed in: the logout above was refused


def test_logout_ends_the_session(browser, keys):
    client = browser(keys["acme"])
    token = csrf_of(client.get("/console/").text)
    copy = dict(client.cookies)
    response = client.post("/console/logout", data={"csrf": token})
    assert (response.status_code, response.headers["location"]) == (303, "/console/login")
    assert 'gm_console=""' in response.headers["set-cookie"]
    assert client.get("/console/datasets").status_code == 303
    assert copy["gm_console"]  # (a copy taken before logging out lasts until it expires or its key is revoked)


def test_a_revoked_keys_session_stops_working(browser, keys, db):
    client = browser(keys["acme"])
    assert client.get("/console/datasets").status_code == 200
    revoke_key(db, keys["acme"])
    response = client.get("/console/datasets")
    assert (response.status_code, response.headers["location"]) == (303, "/console/login")
    assert client.post("/console/jobs", data={"csrf": "x"}).status_code == 401


def test_a_tampered_or_foreign_cookie_is_no_session(browser, keys, app):
    client = browser(keys["acme"])
    value = client.cookies["gm_console"]
    body, _, signature = value.partition(".")
    forged = browser(None)
    forged.cookies.set("gm_console", body + "." + signature[::-1], path="/console")
    assert forged.get("/console/datasets").status_code == 303
    forged.cookies.set("gm_console", "garbage", path="/console")
    assert forged.get("/console/datasets").status_code == 303


def test_what_a_dataset_holds_is_shown_as_text(browser, keys):
    client = browser(keys["acme"])
    response = upload(client, "intents.csv", intents_csv(f'"{SCRIPT} my parcel",track_order'))
    assert response.status_code == 201, response.text
    page = client.get(response.json()["url"])
    assert page.status_code == 200
    assert SCRIPT not in page.text and "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in page.text
    # an invalid file: every problem as file:line: reason, as JSON for the upload script to show as text
    bad = upload(client, "bad.csv", b"text,label\n,track_order\n")
    assert bad.status_code == 422 and bad.json()["issues"][0].startswith("bad.csv:")
    # nor does a path or an id echo markup back
    missing = client.get(f"/console/jobs/{SCRIPT}")
    assert missing.status_code == 404 and SCRIPT not in missing.text


def test_another_tenants_datasets_jobs_and_models_read_404(browser, keys, models, tiny_model_dir):
    acme, globex = browser(keys["acme"]), browser(keys["globex"])
    dataset = upload(acme, "intents.csv", intents_csv()).json()["id"]
    token = csrf_of(acme.get("/console/jobs").text)
    started = acme.post("/console/jobs", data={"csrf": token, "model": "intents-ft", "train": dataset,
                                               "base_model": str(tiny_model_dir), "max_steps": "2"})
    assert started.status_code == 303, started.text
    job = started.headers["location"].rsplit("/", 1)[1]
    assert acme.get(f"/console/jobs/{job}").status_code == 200
    foreign = [f"/datasets/{dataset}", f"/jobs/{job}", f"/jobs/{job}/live", "/models/intents"]
    for path in foreign:
        assert globex.get(f"/console{path}").status_code == 404, path
    token = csrf_of(globex.get("/console/jobs").text)
    assert globex.post(f"/console/jobs/{job}/cancel", data={"csrf": token}).status_code == 404
    assert globex.post(f"/console/datasets/{dataset}/delete", data={"csrf": token}).status_code == 404
    for page in PAGES:  # and no list shows them
        text = globex.get(f"/console{page}").text
        assert dataset not in text and job not in text and "intents" not in text, page
    # the sign-in tenant's own names are there
    assert "intents" in acme.get("/console/models").text and job in acme.get("/console/jobs").text


def test_an_admin_key_sees_every_tenant(browser, keys, models):
    admin = browser(keys["admin_only"])
    assert "admin view" in admin.get("/console/").text
    listed = admin.get("/console/models").text
    assert "intents" in listed and "other" in listed and "globex" in listed
    assert admin.get("/console/models/other").status_code == 200
    assert admin.get("/console/usage", params={"tenant": "globex"}).status_code == 200
    assert browser(keys["acme"]).get("/console/usage", params={"tenant": "globex"}).status_code == 403


def test_keys_are_managed_with_the_admin_scope_and_shown_once(browser, keys, db):
    tenant_key = browser(keys["acme"])
    page = tenant_key.get("/console/keys").text
    assert "needs a key with the admin scope" in page
    token = csrf_of(page)
    assert tenant_key.post("/console/keys", data={"csrf": token, "scope_predict": "1"}).status_code == 403
    admin = browser(keys["admin"])
    token = csrf_of(admin.get("/console/keys").text)
    created = admin.post("/console/keys", data={"csrf": token, "scope_predict": "1"})
    assert created.status_code == 201
    new_key = created.text.split('id="new-key" readonly value="')[1].split('"')[0]
    assert new_key.startswith("gm_") and new_key not in admin.get("/console/keys").text  # shown once
    new_id = new_key.split("_")[1]
    fresh = browser(new_key)
    assert fresh.get("/console/models").status_code == 200
    refused = fresh.get("/console/datasets")  # a predict key: no datasets or jobs, as in the API
    assert refused.status_code == 403 and "lacks the &#39;train&#39; scope" in refused.text
    assert fresh.get("/console/jobs").status_code == 403
    assert "need a key with the train scope" in fresh.get("/console/").text
    trainer = admin.post("/console/keys", data={"csrf": token, "scope_predict": "1", "scope_train": "1"})
    training = browser(trainer.text.split('id="new-key" readonly value="')[1].split('"')[0])
    assert training.get("/console/datasets").status_code == 200 and training.get("/console/jobs").status_code == 200
    revoked = admin.post(f"/console/keys/{new_id}/revoke", data={"csrf": token})
    assert revoked.status_code == 303
    assert fresh.get("/console/models").status_code == 303  # its session ended with it
    other = create_key(db, "globex", "predict").info.id
    assert admin.post(f"/console/keys/{other}/revoke", data={"csrf": token}).status_code == 404  # not acme's key


def test_the_model_page_shows_reports_the_gate_slot_and_admin_actions(browser, keys, models, db):
    acme = browser(keys["acme"])
    page = acme.get("/console/models/intents").text
    assert "Before vs after" in page and "fine-tuned" in page and "gate has not measured this version" in page
    assert "need a key with the admin scope" in page and 'class="promote"' not in page
    token = csrf_of(page)
    assert acme.post("/console/models/intents/rollback", data={"csrf": token}).status_code == 403
    with db.session() as session:  # a report as goldmine.serving.gate stores it, with markup in a class name
        version = session.query(ModelVersion).filter_by(model_name="intents").one().version
        checks = [{"name": f"frozen set class {SCRIPT!r} f1", "candidate": 0.2, "live": 0.9, "limit": ">= 0.85",
                   "passed": False, "examples": 15, "note": "a regression at 95% confidence"},
                  {"name": "frozen set accuracy", "candidate": 0.91, "live": 0.9, "limit": ">= 0.88", "passed": True,
                   "examples": 300, "note": None}]
        report = {"model": "intents", "candidate": version, "live": "f" * 32, "passed": False,
                  "eval_set": {"version": "f" * 32, "examples": 300}, "checks": checks}
        session.add(GateReport(model_name="intents", candidate=version, live="f" * 32, passed=False,
                               report_json=json.dumps(report), created_at=utcnow()))
    page = acme.get("/console/models/intents").text
    assert "Gate checks" in page and ">failed<" in page and "a regression at 95% confidence" in page
    assert "frozen set accuracy" in page and SCRIPT not in page  # escaped
    admin = browser(keys["admin"])
    token = csrf_of(admin.get("/console/models/intents").text)
    refused = admin.post("/console/models/intents/rollback", data={"csrf": token, "alias": "production"})
    assert refused.status_code == 409 and "no earlier version" in refused.text


@pytest.mark.parametrize("key", ["acme", "admin"])
def test_the_playground_is_a_metered_predict_call(browser, keys, models, key):
    client = browser(keys[key])
    token = csrf_of(client.get("/console/playground").text)
    response = client.post("/console/playground", data={"csrf": token, "model": "intents",
                                                         "texts": f"where is my parcel\n{SCRIPT}"})
    assert response.status_code == 200, response.text[-1500:]
    assert 'id="predictions"' in response.text and SCRIPT not in response.text
    usage = client.get("/console/usage").text
    assert "1 calls, 2 texts" in usage, usage[usage.find("usage-totals"):][:300]
    assert "<svg" in usage and 'id="invoice-total"' in usage
    foreign = client.post("/console/playground", data={"csrf": token, "model": "other", "texts": "hi"})
    assert foreign.status_code == 404  # globex's model, even for an admin key: predict is per tenant


def test_monitoring_shows_each_models_windows_and_alarms(browser, keys, models, db):
    from datetime import timedelta

    from goldmine.monitoring.windows import WindowReport
    from goldmine.serving.db import DriftWindow, utcnow

    now = utcnow()
    with db.session() as session:
        for i, (p_value, alarm) in enumerate([(0.4, False), (0.001, True)]):
            report = WindowReport(texts=1000, label_counts={"track_order": 600, "<b>x</b>": 400},
                                  out_of_scope_rate=0.05 * (i + 1), mean_confidence=0.8, confidence_histogram=[0] * 10,
                                  median_words=6.0, input_tests=True, mmd_p_value=p_value, oov_rate=0.02,
                                  oov_rate_training=0.01, alarm=alarm)
            session.add(DriftWindow(tenant_id="acme", model_name="intents", version=models["intents"].version,
                                    started_at=now - timedelta(hours=2 - i), ended_at=now - timedelta(hours=1 - i),
                                    texts=1000, alarm=alarm, report_json=report.to_json()))
    page = browser(keys["acme"]).get("/console/monitoring").text
    assert "drift alarm" in page and "1 window(s) raised the drift alarm" in page and page.count("<svg") == 1
    assert "0.001" in page and "0.1" in page  # the second window's p-value and out-of-scope rate
    other = browser(keys["globex"]).get("/console/monitoring").text
    assert "intents" not in other and "drift alarm" not in other


def test_a_job_form_with_a_bad_field_says_which(browser, keys, tiny_model_dir):
    client = browser(keys["acme"])
    dataset = upload(client, "intents.csv", intents_csv()).json()["id"]
    token = csrf_of(client.get("/console/jobs").text)
    base = {"csrf": token, "model": "intents-ft", "train": dataset, "base_model": str(tiny_model_dir)}
    for extra, said in [({"config": "{not json"}, "invalid value"),
                        ({"config": '{"training": {"learnin_rate": 1}}'}, "learnin_rate"),
                        ({"base_model": "/root/secret-model"}, "model.name"),
                        ({"model": "<Bad>"}, "model")]:
        response = client.post("/console/jobs", data={**base, **extra})
        assert response.status_code == 422 and said in response.text, (extra, response.text[-800:])
        assert 'id="error"' in response.text and "<Bad>" not in response.text


def test_the_upload_is_streamed_past_the_body_limit_and_the_console_can_be_turned_off(settings, db, keys):
    from fastapi.testclient import TestClient

    from goldmine.serving.app import create_app
    from goldmine.serving.settings import Console, Limits

    small = settings.model_copy(update={"limits": Limits(max_body_bytes=500)})  # JSON bodies: 500 bytes at most
    with TestClient(create_app(small), follow_redirects=False) as client:
        token = csrf_of(client.get("/console/login").text)
        assert client.post("/console/login", data={"key": keys["acme"], "csrf": token}).status_code == 303
        content = intents_csv()
        assert len(content) > 500
        assert upload(client, "intents.csv", content).status_code == 201  # streamed, under jobs' own limits
    off = settings.model_copy(update={"console": Console(enabled=False)})
    with TestClient(create_app(off)) as client:
        assert client.get("/console/login").status_code == 404
        assert client.get("/healthz").status_code == 200
