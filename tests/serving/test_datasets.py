"""`/v1/datasets`: streamed uploads validated like `goldmine data check`, per tenant, content-addressed, limited."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from goldmine.serving.app import create_app
from goldmine.serving.settings import load_settings

GOOD = b"text,label\nwhere is my parcel,shipping\nI want my money back,refund\nhello there,greeting\n"
BAD = b"text,label\nwhere is my parcel,shipping\n,refund\nfine,\n"


@pytest.fixture
def client(settings, db, keys):
    with TestClient(create_app(settings)) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(client, key: str, name: str, body: bytes):
    return client.post("/v1/datasets", params={"name": name}, content=body, headers=auth(key))


def test_upload_stores_a_validated_content_addressed_dataset_with_its_report(client, keys, settings):
    first = upload(client, keys["acme"], "intents.csv", GOOD)
    assert first.status_code == 201, first.text
    body = first.json()
    assert len(body["id"]) == 64 and body["name"] == "intents.csv" and body["examples"] == 3
    assert body["kind"] == "text" and body["report"]["splits"]["train"]
    again = upload(client, keys["acme"], "copy.csv", GOOD)  # the same bytes: the same dataset
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    listed = client.get("/v1/datasets", headers=auth(keys["acme"])).json()["datasets"]
    assert [d["id"] for d in listed] == [body["id"]]
    stored = list((settings.jobs.storage_dir / "acme" / "datasets").rglob("*.csv"))
    assert [p.read_bytes() for p in stored] == [GOOD]
    assert not any((settings.jobs.storage_dir / "acme" / "tmp").iterdir())  # nothing left behind
    one = client.get(f"/v1/datasets/{body['id']}", headers=auth(keys["acme"])).json()
    assert one["report"] == body["report"]


def test_invalid_rows_are_422_with_every_problem_as_file_line_reason(client, keys, settings):
    response = upload(client, keys["acme"], "bad.csv", BAD)
    assert response.status_code == 422
    issues = response.json()["error"]["issues"]
    assert len(issues) == 2 and all(issue.startswith("bad.csv:") for issue in issues)
    assert issues[0].startswith("bad.csv:3: ") and issues[1].startswith("bad.csv:4: ")
    assert client.get("/v1/datasets", headers=auth(keys["acme"])).json()["datasets"] == []
    assert not list((settings.jobs.storage_dir / "acme").rglob("*.csv"))


def test_the_same_validation_as_goldmine_data_check(client, keys, tmp_path):
    from typer.testing import CliRunner

    from goldmine.cli import app

    (tmp_path / "bad.csv").write_bytes(BAD)
    printed = CliRunner().invoke(app, ["data", "check", str(tmp_path / "bad.csv")])
    assert printed.exit_code == 2
    issues = upload(client, keys["acme"], "bad.csv", BAD).json()["error"]["issues"]
    cli_text = " ".join(printed.output.split())
    for issue in issues:  # the CLI names the full path, the API the uploaded name
        assert " ".join(issue.removeprefix("bad.csv").split()) in cli_text


@pytest.mark.parametrize("name", ["../evil.csv", "a/b.csv", "..", ".hidden.csv", "x\\y.csv", "..%2fevil.csv"])
def test_path_traversal_in_names_is_refused(client, keys, settings, name):
    response = upload(client, keys["acme"], name, GOOD)
    assert response.status_code == 422, response.text
    assert not list(settings.data_dir.parent.rglob("evil.csv"))


def test_an_unsupported_type_is_415(client, keys):
    assert upload(client, keys["acme"], "model.bin", GOOD).status_code == 415
    assert upload(client, keys["acme"], "data.csv", b"text,label\n\x00\x01,a\n").status_code == 415


def test_another_tenants_dataset_reads_404(client, keys):
    dataset = upload(client, keys["acme"], "intents.csv", GOOD).json()["id"]
    for method in ("get", "delete"):
        assert getattr(client, method)(f"/v1/datasets/{dataset}", headers=auth(keys["globex"])).status_code == 404
    assert client.get("/v1/datasets", headers=auth(keys["globex"])).json()["datasets"] == []
    assert client.get("/v1/datasets/not-an-id", headers=auth(keys["acme"])).status_code == 404


def test_delete_removes_the_row_and_the_file(client, keys, settings):
    dataset = upload(client, keys["acme"], "intents.csv", GOOD).json()["id"]
    assert client.delete(f"/v1/datasets/{dataset}", headers=auth(keys["acme"])).status_code == 204
    assert client.get(f"/v1/datasets/{dataset}", headers=auth(keys["acme"])).status_code == 404
    assert not list((settings.jobs.storage_dir / "acme").rglob("*.csv"))


def test_size_and_storage_limits_are_413(tmp_path, db, keys, settings):
    small = load_settings(data_dir=settings.data_dir, database_url=settings.url, preload=False,
                          jobs={"max_upload_bytes": 200, "max_storage_bytes": 150})
    with TestClient(create_app(small)) as client:
        big = b"text,label\n" + b"a long enough text,label\n" * 20
        assert upload(client, keys["acme"], "big.csv", big).status_code == 413
        # streamed without a Content-Length (chunked): refused as the bytes arrive
        chunked = client.post("/v1/datasets", params={"name": "big.csv"}, content=iter([big[:100], big[100:]]),
                              headers=auth(keys["acme"]))
        assert chunked.status_code == 413
        assert upload(client, keys["acme"], "one.csv", GOOD).status_code == 201  # 90 bytes of 150
        other = GOOD.replace(b"hello there", b"good morning")
        full = upload(client, keys["acme"], "two.csv", other)
        assert full.status_code == 413 and "storage" in full.json()["error"]["message"]
        assert upload(client, keys["globex"], "two.csv", other).status_code == 201  # per tenant
    assert not any(p.is_file() for p in (small.jobs.storage_dir / "acme" / "tmp").rglob("*"))


def test_an_upload_larger_than_the_json_body_limit_is_accepted(tmp_path, db, keys, settings):
    limited = load_settings(data_dir=settings.data_dir, database_url=settings.url, preload=False,
                            limits={"max_body_bytes": 64})
    with TestClient(create_app(limited)) as client:
        assert upload(client, keys["acme"], "intents.csv", GOOD).status_code == 201
