"""`POST /v1/embeddings` in the OpenAI shape: unit-length sentence embeddings of a served encoder, base64 or float,
metered by tokens behind the same keys and limits; the official `openai` client works against a real server."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from goldmine.inference.model import Model
from goldmine.serving.app import create_app
from goldmine.serving.db import UsageRecord

TEXTS = ["where is my parcel", "refund please"]


@pytest.fixture
def client(settings, db, models, keys):
    with TestClient(create_app(settings)) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def expected(run) -> np.ndarray:
    vectors = Model.load(run, runtime="torch").embed(TEXTS)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_embeddings_are_the_models_unit_length_sentence_embeddings(client, keys, models, db, tiny_run):
    r = client.post("/v1/embeddings", json={"model": "intents", "input": TEXTS}, headers=auth(keys["acme"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "intents"
    assert [d["index"] for d in body["data"]] == [0, 1] and {d["object"] for d in body["data"]} == {"embedding"}
    vectors = np.array([d["embedding"] for d in body["data"]])
    np.testing.assert_allclose(vectors, expected(tiny_run("classification")), atol=1e-5)
    with db.session() as s:
        [record] = list(s.query(UsageRecord))
    assert record.items == 2 and record.input_tokens == body["usage"]["prompt_tokens"] > 0
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]


def test_base64_carries_the_same_float32_values(client, keys, models):
    plain = client.post("/v1/embeddings", json={"model": "intents", "input": "refund please"},
                        headers=auth(keys["acme"])).json()
    packed = client.post("/v1/embeddings", json={"model": f"intents@{models['intents'].version}",
                                                 "input": "refund please", "encoding_format": "base64"},
                         headers=auth(keys["acme"])).json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, plain["data"][0]["embedding"], rtol=0, atol=1e-7)


@pytest.mark.parametrize(("body", "key", "status"), [
    ({"model": "intents", "input": TEXTS}, None, 401),
    ({"model": "other", "input": TEXTS}, "acme", 404),  # another tenant's model
    ({"model": "tickets", "input": TEXTS}, "acme", 422),  # NER: no sentence embedding
    ({"model": "intents", "input": [[1, 2, 3]]}, "acme", 422),  # token ids
    ({"model": "intents", "input": []}, "acme", 422),
    ({"model": "intents", "input": [" "]}, "acme", 422),
    ({"model": "intents", "input": TEXTS, "dimensions": 7}, "acme", 422),
    ({"model": "intents", "input": ["x" * 100_000]}, "acme", 413),
])
def test_bad_calls_are_refused_and_not_billed(client, keys, models, db, body, key, status):
    r = client.post("/v1/embeddings", json=body, headers=auth(keys[key]) if key else {})
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    with db.session() as s:
        assert s.query(UsageRecord).count() == 0


def test_the_openai_client_works_against_a_real_server(start_server, settings, db, keys, models, tiny_run):
    openai = pytest.importorskip("openai")
    server = start_server(settings)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=keys["acme"], max_retries=0)
    response = client.embeddings.create(model="intents", input=TEXTS)  # the client asks for base64 and decodes it
    vectors = np.array([item.embedding for item in response.data])
    np.testing.assert_allclose(vectors, expected(tiny_run("classification")), atol=1e-5)
    assert response.usage.prompt_tokens > 0
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="gm_wrong", max_retries=0).embeddings.create(
            model="intents", input=TEXTS)
