"""`/v1/jobs`: fine-tuning jobs from a config and dataset ids, run by workers (in-process here, and real worker
processes for the kill -9 test), watched, cancelled, registered as `candidate`, billed by CPU time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from goldmine.serving.app import create_app
from goldmine.serving.billing import JOBS_LINE, invoice
from goldmine.serving.db import Job, ModelAlias, utcnow
from goldmine.serving.jobs import get_job
from goldmine.serving.settings import load_settings
from goldmine.serving.worker import JobQueue, Worker, requeue_lost


@pytest.fixture
def job_settings(settings, db, tiny_model_dir):
    return load_settings(data_dir=settings.data_dir, database_url=settings.url, preload=False, inference_threads=1,
                         plans={"default": {"per_cpu_hour_minor": 3_600_000}},  # 1 minor unit per CPU-ms
                         jobs={"base_models": [str(tiny_model_dir)], "heartbeat_seconds": 0.3,
                               "lease_seconds": 3, "poll_seconds": 0.2, "max_concurrent_jobs": 2})


@pytest.fixture
def client(job_settings, keys):
    with TestClient(create_app(job_settings)) as c:
        yield c


@pytest.fixture(scope="session")
def intents(demo_files) -> bytes:
    """The first 300 demo intents: jobs in tests train and evaluate in seconds."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(demo_files.intents.read_text())))[:301]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


@pytest.fixture
def dataset(client, keys, intents):
    def upload(key: str = "acme") -> str:
        response = client.post("/v1/datasets", params={"name": "intents.csv"}, content=intents,
                               headers=auth(keys[key]))
        assert response.status_code in (200, 201), response.text
        return response.json()["id"]

    return upload


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def tiny_config(tiny_model_dir, steps: int = 4, **training) -> dict:
    return {"model": {"name": str(tiny_model_dir)},
            "training": {"max_steps": steps, "batch_size": 8, "linear_probe": False, "eval_strategy": "none",
                         **training}}


def start(client, keys, train: str, config: dict, key: str = "acme", model: str = "intents-ft", **extra):
    return client.post("/v1/jobs", json={"model": model, "train": train, "config": config, **extra},
                       headers=auth(keys[key]))


def test_a_job_runs_on_a_worker_and_registers_a_candidate(client, keys, dataset, job_settings, db, tiny_model_dir):
    config = tiny_config(tiny_model_dir, steps=4, eval_strategy="steps", eval_steps=2)
    response = start(client, keys, dataset(), config, export="onnx")
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued" and job["step"] == 0
    assert Worker(job_settings, db).run_once()  # the API process trains nothing: a worker does
    done = client.get(f"/v1/jobs/{job['id']}", headers=auth(keys["acme"])).json()
    assert done["status"] == "succeeded", done["error"]
    assert (done["step"], done["total_steps"], done["attempts"]) == (4, 4, 1)
    assert "accuracy" in done["dev_metrics"] and any("dev accuracy" in line for line in done["log"])
    assert done["cpu_seconds"] > 0 and done["version"]
    with db.session() as session:  # alias candidate, never production by itself
        aliases = {a.alias: a.version for a in session.query(ModelAlias).filter_by(model_name="intents-ft")}
    assert aliases == {"candidate": done["version"]}
    report = client.get(f"/v1/jobs/{job['id']}/report", headers=auth(keys["acme"])).json()
    assert report["version"] == done["version"] and "fine-tuned" in json.dumps(report["before_after"])
    assert report["before_after_markdown"] and report["parity"]["runtimes"]  # exported behind the parity gate
    assert client.get(f"/v1/jobs/{job['id']}/report", headers=auth(keys["globex"])).status_code == 404
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=auth(keys["acme"])).text
    assert events.startswith("event: progress\ndata: {") and "event: end\n" in events
    listed = client.get("/v1/jobs", headers=auth(keys["acme"])).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    # billed on the month's invoice, its own line beside API usage: 1 minor unit per CPU-millisecond
    inv = invoice(db, job_settings, "acme", utcnow().strftime("%Y-%m"))
    (line,) = [line for line in inv.lines if line.kind == "jobs"]
    with db.session() as session:
        cpu_ms = session.get(Job, job["id"]).cpu_ms
    assert (line.model, line.jobs, line.cpu_ms, line.amount_minor) == (JOBS_LINE, 1, cpu_ms, cpu_ms)
    assert inv.total_minor == sum(x.amount_minor for x in inv.lines)


@pytest.mark.parametrize(("config", "field"), [
    ({"training": {"learnin_rate": 1e-4}}, "learnin_rate"),
    ({"training": {"max_steps": "many"}}, "max_steps"),
    ({"task": "telepathy"}, "task"),
    ({"output_dir": "/etc"}, "output_dir"),
    ({"data": {"train": "/etc/passwd"}}, "data.train"),
    ({"model": {"name": "/root/secret-model"}}, "model.name"),
])
def test_an_invalid_config_field_is_422_naming_it(client, keys, dataset, tiny_model_dir, config, field):
    response = start(client, keys, dataset(), {"model.name": str(tiny_model_dir), **config})
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["message"]


def test_a_bad_model_name_is_422(client, keys, dataset, tiny_model_dir):
    response = start(client, keys, dataset(), tiny_config(tiny_model_dir), model="../Intents")
    assert response.status_code == 422 and "model" in response.json()["error"]["message"]


def test_foreign_or_unknown_ids_read_404(client, keys, dataset, tiny_model_dir):
    theirs = dataset("globex")
    assert start(client, keys, theirs, tiny_config(tiny_model_dir)).status_code == 404  # acme using globex's data
    for bad in ("", "0" * 64):
        assert start(client, keys, bad, tiny_config(tiny_model_dir)).status_code == 404
        assert client.post("/v1/jobs", json={"model": "m", "train": theirs, "dev": bad},
                           headers=auth(keys["globex"])).status_code == 404
    job = start(client, keys, dataset(), tiny_config(tiny_model_dir)).json()["id"]
    for method, path in (("get", ""), ("get", "/events"), ("post", "/cancel"), ("get", "/report")):
        response = getattr(client, method)(f"/v1/jobs/{job}{path}", headers=auth(keys["globex"]))
        assert response.status_code == 404, path
    assert client.get("/v1/jobs", headers=auth(keys["globex"])).json()["jobs"] == []


def test_datasets_and_jobs_need_the_train_scope(client, keys, dataset, intents, tiny_model_dir):
    """A key that only predicts (the one built into a customer's app) cannot spend training time: 403 on every
    dataset and job route, while its tenant's train key works."""
    train = dataset()
    job = start(client, keys, train, tiny_config(tiny_model_dir)).json()["id"]
    only = auth(keys["predict_only"])
    calls = [("post", "/v1/datasets?name=intents.csv", {"content": intents}), ("get", "/v1/datasets", {}),
             ("get", f"/v1/datasets/{train}", {}), ("delete", f"/v1/datasets/{train}", {}),
             ("post", "/v1/jobs", {"json": {"model": "m", "train": train}}), ("get", "/v1/jobs", {}),
             ("get", f"/v1/jobs/{job}", {}), ("get", f"/v1/jobs/{job}/events", {}),
             ("post", f"/v1/jobs/{job}/cancel", {}), ("get", f"/v1/jobs/{job}/report", {})]
    for method, path, body in calls:
        response = client.request(method.upper(), path, headers=only, **body)
        assert response.status_code == 403, (path, response.text)
        assert "'train' scope" in response.json()["error"]["message"]
    assert client.get(f"/v1/jobs/{job}", headers=auth(keys["acme"])).status_code == 200


def test_concurrent_jobs_per_tenant_are_limited(client, keys, dataset, tiny_model_dir):
    train = dataset()
    for _ in range(2):
        assert start(client, keys, train, tiny_config(tiny_model_dir)).status_code == 201
    third = start(client, keys, train, tiny_config(tiny_model_dir))
    assert third.status_code == 429 and "at once" in third.json()["error"]["message"]
    assert start(client, keys, dataset("globex"), tiny_config(tiny_model_dir), key="globex",
                 model="globex-ft").status_code == 201  # per tenant


def test_a_dataset_in_use_cannot_be_deleted(client, keys, dataset, tiny_model_dir):
    train = dataset()
    job = start(client, keys, train, tiny_config(tiny_model_dir)).json()["id"]
    assert client.delete(f"/v1/datasets/{train}", headers=auth(keys["acme"])).status_code == 409
    client.post(f"/v1/jobs/{job}/cancel", headers=auth(keys["acme"]))
    assert client.delete(f"/v1/datasets/{train}", headers=auth(keys["acme"])).status_code == 204


def test_cancel_a_queued_job_is_free_and_a_running_one_pays_for_what_it_used(client, keys, dataset, job_settings,
                                                                              db, tiny_model_dir):
    train = dataset()
    queued = start(client, keys, train, tiny_config(tiny_model_dir)).json()["id"]
    cancelled = client.post(f"/v1/jobs/{queued}/cancel", headers=auth(keys["acme"])).json()
    assert cancelled["status"] == "cancelled"
    worker = Worker(job_settings, db)
    assert worker.run_once()  # its message is taken and skipped
    assert get_job(db, None, queued).status == "cancelled" and get_job(db, None, queued).cpu_seconds == 0

    running = start(client, keys, train, tiny_config(tiny_model_dir, steps=100_000)).json()["id"]
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    deadline = time.monotonic() + 60
    while get_job(db, None, running).step < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.post(f"/v1/jobs/{running}/cancel", headers=auth(keys["acme"])).json()["status"] == "running"
    thread.join(60)
    job = get_job(db, None, running)
    assert job.status == "cancelled" and 3 <= job.step < 100_000 and job.cpu_seconds > 0
    inv = invoice(db, job_settings, "acme", utcnow().strftime("%Y-%m"))
    (line,) = [line for line in inv.lines if line.kind == "jobs"]
    assert line.jobs == 2 and line.cpu_ms == round(job.cpu_seconds * 1000)  # the queued one: 0 ms


def test_a_failed_job_records_why_and_is_billed_for_what_it_used(client, keys, dataset, job_settings, db,
                                                                  tiny_model_dir):
    job = start(client, keys, dataset(), tiny_config(tiny_model_dir, save_steps=3, eval_strategy="steps",
                                                     eval_steps=2)).json()["id"]
    Worker(job_settings, db).run_once()
    failed = get_job(db, None, job)
    assert failed.status == "failed" and "save_steps" in failed.error and failed.finished_at
    assert failed.cpu_seconds >= 0


def test_a_lost_job_is_requeued_once(job_settings, db, client, keys, dataset, tiny_model_dir):
    job = start(client, keys, dataset(), tiny_config(tiny_model_dir)).json()["id"]
    with db.session() as session:  # as a worker that died mid-job leaves it
        row = session.get(Job, job)
        row.status, row.worker, row.attempts = "running", "gone:1", 1
        row.heartbeat_at = utcnow().replace(year=2000)
    queue = JobQueue(job_settings)
    assert requeue_lost(db, job_settings, queue) == [job]
    assert requeue_lost(db, job_settings, queue) == []  # once
    assert get_job(db, None, job).status == "queued" and "worker lost" in get_job(db, None, job).log[-1]


def _age(db, job: str, seconds: float = 3600) -> None:
    """Make a queued job look older than a lease (its created_at moved back)."""
    from datetime import timedelta

    with db.session() as session:
        row = session.get(Job, job)
        row.created_at = row.created_at - timedelta(seconds=seconds)


def test_a_lost_queue_message_is_sent_again(job_settings, db, client, keys, dataset, tiny_model_dir):
    """A queued job whose message the queue lost (a queue restarted without its data) is sent again, once, and
    runs; a job whose message is still waiting is left alone."""
    lost = start(client, keys, dataset(), tiny_config(tiny_model_dir)).json()["id"]
    queue = JobQueue(job_settings)
    assert queue.pending_jobs() == {lost}
    queue.huey.flush()  # the message is gone, the row still says queued
    assert queue.pending_jobs() == set()
    assert requeue_lost(db, job_settings, queue) == []  # younger than a lease: a worker may be claiming it now
    _age(db, lost)
    assert requeue_lost(db, job_settings, queue) == [lost]
    assert requeue_lost(db, job_settings, queue) == []  # its message is there again
    assert queue.pending_jobs() == {lost}
    assert Worker(job_settings, db).run_once()
    assert get_job(db, None, lost).status == "succeeded"


def test_a_job_runs_end_to_end_on_redis(job_settings, db, keys, dataset, tiny_model_dir, redis_url):
    """POST /v1/jobs on a server whose queue is Redis, a worker on the same Redis trains it and registers the
    candidate; a message Redis lost is sent again. The same code as the SQLite queue, configured by one URL."""
    settings = job_settings.model_copy(update={"jobs": job_settings.jobs.model_copy(
        update={"queue_url": redis_url})})
    train = dataset()  # stored in the database and the storage root, whichever queue carries the messages
    with TestClient(create_app(settings)) as redis_client:
        first = start(redis_client, keys, train, tiny_config(tiny_model_dir)).json()["id"]
        second = start(redis_client, keys, train, tiny_config(tiny_model_dir), model="intents-two").json()["id"]
        queue = JobQueue(settings)
        assert type(queue.huey).__name__ == "RedisHuey" and queue.pending_jobs() == {first, second}
        assert Worker(settings, db).run_once()  # one message, one job
        assert get_job(db, None, first).status == "succeeded"
        queue.huey.flush()  # Redis restarted without its data: the second message is gone
        _age(db, second)
        assert Worker(settings, db).run_once()  # sends it again, then runs it
        done = redis_client.get(f"/v1/jobs/{second}", headers=auth(keys["acme"])).json()
    assert done["status"] == "succeeded" and done["version"]


def test_the_queue_runs_on_redis_with_the_same_code(job_settings, redis_url):
    settings = job_settings.model_copy(update={"jobs": job_settings.jobs.model_copy(
        update={"queue_url": redis_url})})
    queue = JobQueue(settings)
    queue.enqueue("job_x")
    assert type(queue.huey).__name__ == "RedisHuey" and queue.pending() == 1
    task = JobQueue(settings).huey.dequeue()  # another process (machine) sees the message
    assert task.args == ("job_x",)


def test_cli_lists_shows_and_cancels_jobs(client, keys, dataset, job_settings, tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from goldmine.cli import app

    job = start(client, keys, dataset(), tiny_config(tiny_model_dir)).json()["id"]
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(job_settings.model_dump(mode="json")))
    runner = CliRunner()
    listed = runner.invoke(app, ["jobs", "list", "--config", str(config)])
    assert listed.exit_code == 0 and job in listed.output and "queued" in listed.output
    shown = runner.invoke(app, ["jobs", "show", job, "--config", str(config)])
    assert json.loads(shown.output)["id"] == job
    cancelled = runner.invoke(app, ["jobs", "cancel", job, "--config", str(config)])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output


def _worker(config, log):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDMINE_")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "goldmine.cli", "worker", "--config", str(config)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def test_a_worker_killed_mid_job_is_resumed_from_its_checkpoint(client, keys, dataset, job_settings, db,
                                                                tiny_model_dir, tmp_path, start_server):
    """SIGKILL a real `goldmine worker` process mid-job: once its lease expires the local worker of a `goldmine
    serve` resumes the job from its last checkpoint, and it ends at the same step count."""
    steps = 120
    job = start(client, keys, dataset(), tiny_config(tiny_model_dir, steps=steps, save_steps=10,
                                                     logging_steps=10)).json()["id"]
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(job_settings.model_dump(mode="json")))
    log = (tmp_path / "workers.log").open("a")
    first = _worker(config, log)
    try:
        deadline = time.monotonic() + 300  # a shared, loaded machine: imports alone may take a minute
        while get_job(db, None, job).step < 30 and time.monotonic() < deadline:
            assert first.poll() is None, (tmp_path / "workers.log").read_text()[-3000:]
            time.sleep(0.05)
        killed_at = get_job(db, None, job).step
        assert 30 <= killed_at < steps
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        log.close()
    assert get_job(db, None, job).status == "running"  # until its lease expires
    server = start_server(job_settings, GOLDMINE_CONFIG=str(config), GOLDMINE_JOBS__LOCAL_WORKER="true")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done = httpx.get(f"{server.url}/v1/jobs/{job}", headers=auth(keys["acme"]), timeout=10).json()
        if done["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.5)
    assert done["status"] == "succeeded", (done["error"], server.log.read_text()[-3000:])
    assert (done["step"], done["total_steps"], done["attempts"]) == (steps, steps, 2)
    text = "\n".join(done["log"])
    assert "worker lost" in text and "resuming from the last checkpoint" in text
    models = httpx.get(f"{server.url}/v1/models", headers=auth(keys["acme"]), timeout=10).json()["models"]
    assert [(m["name"], m["aliases"]) for m in models] == [("intents-ft", {"candidate": done["version"]})]
