"""The real server: `goldmine serve` in a subprocess on 127.0.0.1 and a random port, called over HTTP.

Covers what only a real process shows: concurrent calls reconcile exactly with usage records and the bill,
and a server killed with SIGKILL right after answering has lost no record of what it answered.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest

from goldmine.serving.billing import invoice
from goldmine.serving.db import UsageRecord, utcnow


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def burst(url: str, key: str, n: int, texts_per_call: int = 1) -> list[httpx.Response]:
    """`n` concurrent predict calls with distinct texts."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        calls = [client.post("/v1/models/intents/predict", headers=auth(key),
                             json={"texts": [f"where is parcel {i} {j}" for j in range(texts_per_call)]})
                 for i in range(n)]
        return await asyncio.gather(*calls)


def stored(db) -> dict[str, UsageRecord]:
    with db.session() as s:
        return {r.request_id: r for r in s.query(UsageRecord)}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_real_server_auth_and_reconciliation(start_server, db, settings, keys, models):
    server = start_server(settings)
    h = auth(keys["acme"])
    r = httpx.post(f"{server.url}/v1/models/intents/predict", json={"texts": ["refund please"]}, headers=h)
    assert r.status_code == 200 and r.headers["x-model-version"] == models["intents"].version
    statuses = {
        "no key": httpx.post(f"{server.url}/v1/models/intents/predict", json={"texts": ["a"]}).status_code,
        "wrong scope": httpx.post(f"{server.url}/v1/models/intents/predict", json={"texts": ["a"]},
                                  headers=auth(keys["admin_only"])).status_code,
        "other tenant": httpx.post(f"{server.url}/v1/models/intents/predict", json={"texts": ["a"]},
                                   headers=auth(keys["globex"])).status_code,
    }
    assert statuses == {"no key": 401, "wrong scope": 403, "other tenant": 404}

    n = 40
    responses = asyncio.run(burst(server.url, keys["acme"], n, texts_per_call=2))
    assert [x.status_code for x in responses] == [200] * n
    ids = {x.json()["request_id"] for x in responses}
    records = stored(db)
    assert len(records) == n + 1 and ids <= set(records)
    assert all(records[i].items == 2 and records[i].version == models["intents"].version for i in ids)
    bill = invoice(db, settings, "acme", utcnow().strftime("%Y-%m"))
    assert bill.calls == n + 1 and bill.input_tokens == sum(r.input_tokens for r in records.values())
    assert sum(line.amount_minor for line in bill.lines) == bill.total_minor
    metrics = httpx.get(f"{server.url}/metrics").text
    batches = float(next(line.split()[-1] for line in metrics.splitlines()
                         if line.startswith('goldmine_batch_size_count{model="intents"}')))
    assert batches < n + 1  # concurrent calls shared forward passes
    server.stop()  # SIGTERM: graceful (uvicorn re-raises the signal after its shutdown, hence no exit code 0)
    log = server.log.read_text()
    assert "Application shutdown complete" in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith('{"request_id"')]
    assert ids <= {line["request_id"] for line in lines}  # one JSON line per request...
    assert "where is parcel" not in log and "refund please" not in log  # ...and no input text


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_loses_no_answered_request(start_server, db, settings, models, keys):
    server = start_server(settings)
    responses = asyncio.run(burst(server.url, keys["acme"], 30))
    answered = [x.json()["request_id"] for x in responses if x.status_code == 200]
    server.kill()  # SIGKILL right after the last answer: no shutdown hook runs
    assert len(answered) == 30
    server.start()
    usage = httpx.get(f"{server.url}/v1/usage", headers=auth(keys["acme"])).json()
    assert usage["calls"] == 30
    assert set(answered) == set(stored(db))


def test_two_servers_sharing_redis_grant_one_rate(start_server, settings, db, models, redis_url):
    """Two replicas behind a (client-side) round robin: together they grant the key's rate once, not twice."""
    from goldmine.serving.auth import create_key

    rate = 4.0
    key = create_key(db, "acme", "predict", rate=rate).key
    replicas = [start_server(settings, GOLDMINE_REDIS_URL=redis_url) for _ in range(2)]

    async def hammer():
        granted, limited = 0, 0
        async with httpx.AsyncClient(timeout=30) as client:
            started = time.monotonic()
            for i in range(200):  # bounded: at most 200 calls, for at most 3 s
                if time.monotonic() - started > 3:
                    break
                r = await client.post(f"{replicas[i % 2].url}/v1/models/intents/predict", headers=auth(key),
                                      json={"texts": ["where is my parcel"]})
                granted += r.status_code == 200
                limited += r.status_code == 429
                await asyncio.sleep(0.01)
            return granted, limited, time.monotonic() - started

    granted, limited, elapsed = asyncio.run(hammer())
    assert limited > 0
    assert granted <= rate + rate * elapsed + 1  # burst + refill, shared; two local limiters would allow ~twice
    assert len(stored(db)) == granted


def readme_curl() -> str:
    """The README's predict example (the `curl ... -d '{"texts": ...}'` command with its continuation line)."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "README.md").read_text()
    match = re.search(r"^curl -s localhost:8000/v1/models/intents/predict.*?\}'$", text, re.M | re.S)
    assert match, "the README's curl example is gone: update this test"
    return match.group(0).replace("\\\n", " ")


def test_the_readme_curl_example_works_as_written(start_server, settings, keys, models):
    """`curl -d` sends `Content-Type: application/x-www-form-urlencoded`; the body is JSON, so it is read as JSON."""
    import http.client
    import os
    import shutil
    import subprocess

    server = start_server(settings)
    host, port = server.url.removeprefix("http://").split(":")
    body = b'{"texts": ["where is my parcel?"]}'
    connection = http.client.HTTPConnection(host, int(port), timeout=60)  # exactly the headers curl -d sends
    connection.request("POST", "/v1/models/intents/predict", body=body, headers={
        "Authorization": f"Bearer {keys['acme']}", "Idempotency-Key": "order-42", "User-Agent": "curl/8",
        "Accept": "*/*", "Content-Type": "application/x-www-form-urlencoded"})
    raw = connection.getresponse()
    answer = json.loads(raw.read())
    assert raw.status == 200 and answer["version"] == models["intents"].version and len(answer["predictions"]) == 1
    if shutil.which("curl"):  # and the command itself, character for character but the port
        command = readme_curl().replace("localhost:8000", f"{host}:{port}")
        out = subprocess.run(["bash", "-c", command], env={**os.environ, "KEY": keys["acme"]}, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert json.loads(out)["request_id"] == answer["request_id"]  # the same Idempotency-Key: a replay
