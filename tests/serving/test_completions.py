"""`/v1/chat/completions` and `/v1/completions` in the OpenAI shape: replies from a served decoder, streamed as
server-sent events, metered by prompt and completion tokens (billed by plan), behind the same keys and limits as
predict, with a token rate limit; a stream cut by the client, or by SIGKILL, is billed for what was sent."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from goldmine.serving.app import create_app
from goldmine.serving.auth import create_key
from goldmine.serving.billing import invoice
from goldmine.serving.db import UsageRecord, utcnow
from goldmine.serving.registry import register
from goldmine.serving.settings import PricePlan

ASK = [{"role": "user", "content": "awful film"}]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def writers(db, settings, tiny_chat_run, models):
    """Tenant acme serves `reviewer` (a trained decoder) and `rambler` (an untrained one) beside its encoders."""
    return {"reviewer": register(db, settings.registry_dir, "reviewer", tiny_chat_run(True), "acme"),
            "rambler": register(db, settings.registry_dir, "rambler", tiny_chat_run(False), "acme")}


@pytest.fixture
def client(settings, db, writers, keys):
    with TestClient(create_app(settings)) as c:
        yield c


def records(db) -> list[UsageRecord]:
    with db.session() as s:
        return list(s.query(UsageRecord).order_by(UsageRecord.id))


def sse(lines) -> list[dict]:
    """The JSON payloads of a server-sent event stream, up to [DONE] (which must be there)."""
    payloads, done = [], False
    for line in lines:
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            done = True
            break
        payloads.append(json.loads(line[len("data: "):]))
    assert done, "the stream must end with data: [DONE]"
    return payloads


def test_chat_completion_answers_and_bills_prompt_and_completion_tokens(client, keys, db, settings):
    r = client.post("/v1/chat/completions", headers=auth(keys["acme"]),
                    json={"model": "reviewer", "messages": ASK, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    [choice] = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "negative"} and choice["finish_reason"] == "stop"
    [record] = records(db)
    assert (record.input_tokens, record.output_tokens) == (body["usage"]["prompt_tokens"],
                                                          body["usage"]["completion_tokens"])
    assert body["usage"]["completion_tokens"] == 1 and body["usage"]["total_tokens"] == record.input_tokens + 1
    settings.plans["default"] = PricePlan(per_1k_tokens_minor=0, per_1k_output_tokens_minor=1000)  # 1 per token
    bill = invoice(db, settings, "acme", utcnow().strftime("%Y-%m"))
    [line] = bill.lines
    assert (line.output_tokens, line.amount_minor, bill.output_tokens) == (1, 1, 1)


def test_streamed_chunks_add_up_to_the_reply_with_usage_last(client, keys, db):
    plain = client.post("/v1/chat/completions", headers=auth(keys["acme"]),
                        json={"model": "rambler", "messages": ASK, "temperature": 0, "max_tokens": 12}).json()
    with client.stream("POST", "/v1/chat/completions", headers=auth(keys["acme"]),
                       json={"model": "rambler", "messages": ASK, "temperature": 0, "max_tokens": 12, "stream": True,
                             "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        chunks = sse(r.iter_lines())
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]
    assert [r.output_tokens for r in records(db)] == [12, 12]


def test_text_completion_and_n_choices_with_seeds(client, keys, db):
    body = {"model": "rambler", "prompt": "where is my parcel", "max_tokens": 6, "n": 2, "temperature": 1.5,
            "seed": 3}
    first = client.post("/v1/completions", headers=auth(keys["acme"]), json=body).json()
    again = client.post("/v1/completions", headers=auth(keys["acme"]), json=body).json()
    assert first["object"] == "text_completion" and [c["index"] for c in first["choices"]] == [0, 1]
    assert [c["text"] for c in first["choices"]] == [c["text"] for c in again["choices"]]  # seeded: reproducible
    tokens = first["usage"]["completion_tokens"]
    assert 2 <= tokens <= 12 and records(db)[0].output_tokens == tokens  # a sampled end of turn may come early


@pytest.mark.parametrize(("body", "key", "status"), [
    ({"model": "reviewer", "messages": ASK}, None, 401),
    ({"model": "other", "messages": ASK}, "acme", 404),  # another tenant's model
    ({"model": "intents", "messages": ASK}, "acme", 422),  # a classifier writes nothing
    ({"model": "reviewer", "messages": ASK, "max_tokens": 100_000}, "acme", 422),  # over the server's cap
    ({"model": "reviewer", "messages": ASK, "tools": [{"type": "function"}]}, "acme", 422),
    ({"model": "reviewer", "messages": ASK, "n": 99}, "acme", 422),
    ({"model": "reviewer", "messages": [{"role": "robot", "content": "hi"}]}, "acme", 422),
    ({"model": "reviewer", "messages": ASK, "logprobs": True}, "acme", 422),
    ({"model": "reviewer", "messages": ASK, "response_format": {"type": "json_object"}}, "acme", 422),
    ({"model": "reviewer", "messages": []}, "acme", 422),
    ({"model": "reviewer", "messages": ASK, "stop": ""}, "acme", 422),
    ({"model": "reviewer", "messages": [{"role": "user", "content": "x " * 100_000}]}, "acme", 413),
])
def test_bad_calls_are_refused_and_not_billed(client, keys, db, body, key, status):
    r = client.post("/v1/chat/completions", json=body, headers=auth(keys[key]) if key else {})
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    assert records(db) == []


def test_the_token_rate_limit_counts_prompt_and_max_tokens_and_gives_back_the_rest(client, db):
    key = create_key(db, "acme", "predict", tokens_per_minute=100).key

    def ask(max_tokens: int):
        return client.post("/v1/chat/completions", headers=auth(key),
                           json={"model": "reviewer", "messages": ASK, "temperature": 0, "max_tokens": max_tokens})

    first = ask(80)  # takes prompt + 80 of 100, gives back the 79 it did not write
    assert first.status_code == 200, first.text
    prompt = first.json()["usage"]["prompt_tokens"]
    assert 0 < prompt < 10
    assert ask(80).status_code == 200  # fits only because the first call gave back what it did not use
    limited = ask(80)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    too_big = ask(100 - prompt + 1)  # could never fit in a minute's tokens
    assert too_big.status_code == 422 and "per minute" in too_big.json()["error"]["message"]
    assert len(records(db)) == 2


def test_a_full_decoder_queue_answers_503_with_retry_after(settings, db, writers, keys):
    settings.generation.max_batch = 1
    settings.generation.max_queue = 1
    settings.generation.max_queue_wait_s = 0.2

    async def crowd():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
            calls = [c.post("/v1/completions", headers=auth(keys["acme"]),
                            json={"model": "rambler", "prompt": "hi", "max_tokens": 400, "temperature": 0})
                     for _ in range(6)]
            return await asyncio.gather(*calls)

    app = create_app(settings)
    with TestClient(app):  # runs the lifespan (database, pool); the calls go through the ASGI transport
        responses = asyncio.run(crowd())
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes, codes
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code == 503)
    assert len(records(db)) == codes.count(200)


def test_a_client_that_disconnects_mid_stream_is_billed_for_what_it_was_sent(client, keys, db):
    received = 0
    with client.stream("POST", "/v1/completions", headers=auth(keys["acme"]),
                       json={"model": "rambler", "prompt": "hi", "max_tokens": 400, "temperature": 0,
                             "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                received += 1
                if received == 3:
                    break  # the client goes away
    [record] = records(db)
    assert record.output_tokens >= 3  # every chunk it saw was billed before it was sent...
    assert record.output_tokens < 400  # ...and the server stopped generating


def test_the_openai_client_streams_against_a_real_server_and_sigkill_loses_no_sent_token(
        start_server, settings, db, writers, keys):
    openai = pytest.importorskip("openai")
    server = start_server(settings)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=keys["acme"], max_retries=0)
    reply = client.chat.completions.create(model="reviewer", messages=ASK, temperature=0)
    assert reply.choices[0].message.content == "negative" and reply.usage.completion_tokens == 1
    stream = client.chat.completions.create(model="rambler", messages=ASK, temperature=0, max_tokens=8,
                                            stream=True, stream_options={"include_usage": True})
    parts = list(stream)
    assert parts[-1].usage.completion_tokens == 8
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="gm_wrong", max_retries=0).chat.completions.create(
            model="reviewer", messages=ASK)

    seen = 0
    with httpx.stream("POST", f"{server.url}/v1/completions", headers=auth(keys["acme"]), timeout=60,
                      json={"model": "rambler", "prompt": "hi", "max_tokens": 500, "temperature": 0,
                            "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                seen += 1
                if seen == 5:
                    server.kill()  # SIGKILL mid-stream: no shutdown hook runs
                    break
    stored = records(db)
    assert len(stored) == 3
    assert stored[-1].output_tokens >= 5  # each chunk the client saw had been committed before it was sent
