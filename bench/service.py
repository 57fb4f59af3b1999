"""Fine-tuning as a service (issue 16): jobs through the API against `goldmine train` run directly, a worker killed
mid-job, and the drift monitor's alarms on real traffic.

    python bench/service.py                       # every section (about an hour on 2 cores: run it in the background)
    python bench/service.py --only drift --reuse  # reuse runs/bench/service-banking77

Results merge into bench/results/service.json and .md (a run of some sections rewrites only theirs): the headline
keys (`job_overhead`, `feedback`, `drift`, `jobs_lost`) at the top, each section whole under `sections` with its
provenance (git commit, command line, machine, date).

jobs      The demo intents (written by `goldmine.demo`, ~930 messages, 10 intents) fine-tuned with the bundled MiniLM
          twice, one after the other with the same config: by `goldmine train` in a subprocess, and as a job through
          the API of a `goldmine serve` subprocess (upload the file, POST /v1/jobs, poll until it has succeeded) run by
          a `goldmine worker` subprocess. `job_overhead` = job wall time (POST to succeeded) / direct wall time - 1
          (target <= 0.10); queue wait (created -> started) and the worker's run time are reported beside it.
kill      A longer job (checkpoints every 10 steps) whose worker process is killed with SIGKILL a third of the way;
          a second worker picks it up once its lease expires and resumes from the last checkpoint: the step count it
          ends at, the attempts, and `jobs_lost` (jobs that did not succeed).
drift     A banking77 classifier (the bundled MiniLM, one epoch on banking77 train; its run carries the drift
          reference `goldmine train` writes) watched by the server's own monitoring code (`monitoring.windows`:
          a window of WINDOW texts closes, its sample is embedded and tested against the reference with the MMD
          permutation test; alarm below p = 0.01):
          - no shift: banking77 dev in random orders (SEEDS orders): `false_alarm_rate` = windows with an alarm /
            windows;
          - shift: banking77 dev traffic that switches, at a random point, to clinc150 dev requests of the domains
            other than banking and credit cards (travel, kitchen, auto, ...): `detection_delay_requests` = requests
            after the switch until the window that raises the alarm has closed (mean over SEEDS switches).
feedback  banking77: a first version trained on a quarter of train (dev as its test split: the gate's frozen set);
          TRAFFIC held-out train texts sent through the predict route (TestClient on the real app), a feedback with
          the right label for every wrong answer; `goldmine retrain` (the live data plus the corrections, a share
          held out for the gate): dev accuracy before vs after and the gate's verdict; a candidate trained on the
          first version's texts with shuffled labels, which the gate must reject (`bad_candidate_rejected`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine_info, provenance  # noqa: E402
from runs import free_port, read_jsonl, wait_until_ready  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data"
WINDOW = 200
SEEDS = 5
ALARM_P_VALUE = 0.01
PERMUTATIONS = 200
OTHER_DOMAINS_EXCLUDED = ("banking", "credit_cards")  # clinc150 domains that overlap banking77
JOB_CONFIG = {"task": "classification", "training": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-4,
                                                     "eval_strategy": "none", "seed": 42}}
KILL_CONFIG = {"task": "classification", "training": {"max_steps": 90, "batch_size": 16, "learning_rate": 1e-4,
                                                      "eval_strategy": "none", "save_steps": 10, "seed": 42,
                                                      "linear_probe": False}}


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)



# ------------------------------------------------------------------------------------------------------- drift

def banking77_model(runs: Path, reuse: bool) -> Path:
    import goldmine

    out = runs / "service-banking77"
    if reuse and (out / "drift_reference.npz").is_file():
        return out
    log(f"training the banking77 classifier into {out}")
    goldmine.train(None, **{"task": "classification", "model.name": "bundled", "model.pooling": "mean",
                            "model.max_length": 64, "data.train": str(DATA / "banking77" / "train.jsonl"),
                            "data.dev": str(DATA / "banking77" / "dev.jsonl"), "training.epochs": 1,
                            "training.batch_size": 32, "training.learning_rate": 1e-4, "training.warmup_ratio": 0.1,
                            "training.eval_strategy": "none", "training.linear_probe": False, "training.seed": 42,
                            "output_dir": str(out)})
    return out


def other_domain_texts() -> list[str]:
    domains = json.loads((DATA / "clinc150" / "domains.json").read_text())
    excluded = {intent for name in OTHER_DOMAINS_EXCLUDED for intent in domains[name]}
    return [r["text"] for r in read_jsonl(DATA / "clinc150" / "dev.jsonl")
            if r["label"] != "oos" and r["label"] not in excluded]


def close_windows(model, reference, stream: list[str], predictions: dict[str, dict], switch: int | None = None
                  ) -> list[dict]:
    """Feed `stream` through monitoring windows of WINDOW texts as the server does; each closed window's figures
    (and the number of texts seen when it closed)."""
    from goldmine.monitoring.windows import Window

    closed, window = [], None
    for position, text in enumerate(stream, 1):
        if window is None:
            window = Window("bench", "banking77", "v", WINDOW, None)
            window.rng = random.Random(position)
        window.observe(text, predictions[text])
        if window.texts >= WINDOW:
            report = window.close(model, reference, PERMUTATIONS, ALARM_P_VALUE)
            closed.append({"seen": position, "p_value": report.mmd_p_value, "alarm": report.alarm,
                           "after_switch": switch is not None and position > switch})
            window = None
    return closed


def bench_drift(args) -> dict:
    from goldmine.inference.model import Model
    from goldmine.monitoring.reference import DriftReference

    run = banking77_model(args.runs, args.reuse)
    model, reference = Model.load(run), DriftReference.load(run)
    calm_texts = [r["text"] for r in read_jsonl(DATA / "banking77" / "dev.jsonl")]
    shifted_texts = other_domain_texts()
    log(f"predicting {len(calm_texts)} banking77 dev and {len(shifted_texts)} clinc150 other-domain texts")
    everything = list(dict.fromkeys(calm_texts + shifted_texts))
    predictions = dict(zip(everything, model.predict(everything), strict=True))

    calm_windows, calm_p = 0, []
    for seed in range(SEEDS):
        stream = calm_texts[:]
        random.Random(seed).shuffle(stream)
        windows = close_windows(model, reference, stream, predictions)
        calm_windows += len(windows)
        calm_p += [w["p_value"] for w in windows]
        log(f"no shift, order {seed}: {sum(w['alarm'] for w in windows)} alarms in {len(windows)} windows")
    false_alarms = sum(p < ALARM_P_VALUE for p in calm_p)

    delays, trials = [], []
    for seed in range(SEEDS):
        rng = random.Random(100 + seed)
        before, after = calm_texts[:], shifted_texts[:]
        rng.shuffle(before)
        rng.shuffle(after)
        switch = rng.randrange(WINDOW, 4 * WINDOW)  # not on a window boundary by design
        stream = before[:switch] + after[: 5 * WINDOW]
        windows = close_windows(model, reference, stream, predictions, switch)
        early = [w for w in windows if not w["after_switch"]]
        first = next((w for w in windows if w["after_switch"] and w["alarm"]), None)
        delay = first["seen"] - switch if first else None
        trials.append({"switch_at": switch, "delay_requests": delay,
                       "alarms_before_switch": sum(w["alarm"] for w in early),
                       "p_values": [round(w["p_value"], 4) for w in windows]})
        if delay is not None:
            delays.append(delay)
        log(f"shift at {switch}: alarm after {delay} requests")
    return {
        "false_alarm_rate": round(false_alarms / calm_windows, 4),
        "detection_delay_requests": round(statistics.mean(delays), 1) if delays else None,
        "detected": f"{len(delays)}/{SEEDS}",
        "no_shift": {"windows": calm_windows, "alarms": false_alarms, "orders": SEEDS,
                     "median_p_value": round(statistics.median(calm_p), 4)},
        "shift": trials,
        "settings": {"window_texts": WINDOW, "sample_texts": WINDOW, "permutations": PERMUTATIONS,
                     "alarm_p_value": ALARM_P_VALUE, "reference_texts": int(len(reference.embeddings)),
                     "shifted_from": "clinc150 dev, domains other than " + " and ".join(OTHER_DOMAINS_EXCLUDED),
                     "shifted_texts": len(shifted_texts)},
        "model_dirs": {"banking77": str(run)},
    }


def render_drift(entry: dict) -> list[str]:
    lines = ["## drift: the monitor's alarm on banking77 traffic", "",
             f"- no shift (banking77 dev, {entry['no_shift']['orders']} orders): {entry['no_shift']['alarms']} alarms "
             f"in {entry['no_shift']['windows']} windows: **false-alarm rate {entry['false_alarm_rate']}** "
             f"(expected {ALARM_P_VALUE} by construction of the test); median p-value "
             f"{entry['no_shift']['median_p_value']}",
             f"- shift to {entry['settings']['shifted_from']}: detected in {entry['detected']} switches, **mean "
             f"delay {entry['detection_delay_requests']} requests** after the switch (windows of "
             f"{entry['settings']['window_texts']}: the alarm comes when the first window holding enough new "
             "requests closes)", "",
             "| switch at | alarm after (requests) | alarms before the switch | window p-values |",
             "|---:|---:|---:|---|"]
    for t in entry["shift"]:
        lines.append(f"| {t['switch_at']} | {t['delay_requests']} | {t['alarms_before_switch']} | "
                     f"{', '.join(str(p) for p in t['p_values'])} |")
    return lines


# -------------------------------------------------------------------------------------------------- jobs, kill

class Service:
    """A `goldmine serve` subprocess (no local worker) with its own data dir, one tenant and its key."""

    def __init__(self, work: Path):
        import shutil

        from goldmine.serving.auth import create_key
        from goldmine.serving.db import open_database
        from goldmine.serving.settings import load_settings

        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        self.work = work
        self.port = free_port()
        settings = {"data_dir": str(work / "serving"), "port": self.port, "preload": False,
                    "jobs": {"local_worker": False, "heartbeat_seconds": 1.0, "lease_seconds": 15.0,
                             "poll_seconds": 0.5, "max_concurrent_jobs": 4}}
        self.config = work / "serving.yaml"
        self.config.write_text(json.dumps(settings))  # JSON is YAML
        db = open_database(load_settings(self.config))
        self.key = create_key(db, "acme", "predict,train").key
        db.dispose()
        self.log = (work / "server.log").open("a")
        self.process = subprocess.Popen([sys.executable, "-m", "goldmine.cli", "serve", "--config", str(self.config)],
                                        env=_env(), stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until_ready(self.url, self.process, work / "server.log", 300)

    def call(self, method: str, path: str, **kwargs):
        import httpx

        response = httpx.request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {self.key}"},
                                 timeout=60, **kwargs)
        if response.status_code >= 400:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def worker(self, name: str) -> subprocess.Popen:
        log = (self.work / f"{name}.log").open("a")
        return subprocess.Popen([sys.executable, "-m", "goldmine.cli", "worker", "--config", str(self.config)],
                                env=_env(), stdout=log, stderr=subprocess.STDOUT)

    def wait_job(self, job: str, until=lambda j: j["status"] in ("succeeded", "failed", "cancelled"),
                 seconds: float = 3600) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            state = self.call("GET", f"/v1/jobs/{job}")
            if until(state):
                return state
            time.sleep(0.25)
        raise SystemExit(f"job {job} did not get there in {seconds} s: {state}")

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDMINE_")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env



def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end.rstrip("Z")) - datetime.fromisoformat(start.rstrip("Z")))
                 .total_seconds(), 2)


def bench_jobs(args) -> dict:
    from goldmine.demo.datasets import write_demo_data
    from goldmine.serving.jobs import flatten

    work = args.runs / "service-jobs"
    data = write_demo_data(work / "data").intents
    direct_out = work / "direct"
    overrides = [f"{k}={v}" for k, v in flatten(JOB_CONFIG).items()]
    log("direct: goldmine train")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "goldmine.cli", "train", "--set", f"data.train={data}",
                    "--set", f"output_dir={direct_out}", *[a for o in overrides for a in ("--set", o)]],
                   env=_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    direct_s = time.perf_counter() - started

    service = Service(work / "service")
    worker = service.worker("worker")
    try:
        log("as a job: upload, POST /v1/jobs, wait")
        submitted = time.perf_counter()
        dataset = service.call("POST", "/v1/datasets", params={"name": "intents.csv"}, content=data.read_bytes())
        job = service.call("POST", "/v1/jobs", json={"model": "intents", "train": dataset["id"],
                                                     "config": JOB_CONFIG})
        done = service.wait_job(job["id"])
        job_s = time.perf_counter() - submitted
        if done["status"] != "succeeded":
            raise SystemExit(f"the job did not succeed: {done['error']}")
        entry = {
            "job_overhead": round(job_s / direct_s - 1, 4),
            "direct_wall_s": round(direct_s, 2), "job_wall_s": round(job_s, 2),
            "queue_wait_s": _seconds(done["created_at"], done["started_at"]),
            "worker_run_s": _seconds(done["started_at"], done["finished_at"]),
            "job_cpu_seconds": done["cpu_seconds"], "config": JOB_CONFIG, "data": "goldmine.demo intents",
        }
        log(f"direct {direct_s:.1f} s, as a job {job_s:.1f} s: overhead {entry['job_overhead']:+.1%}")
        entry["kill"] = _kill(service, worker, dataset["id"])
        entry["jobs_lost"] = entry["kill"]["jobs_lost"]
    finally:
        for process in (worker,):
            if process.poll() is None:
                process.kill()
        service.close()
    return entry


def _kill(service: Service, worker: subprocess.Popen, dataset: str) -> dict:
    job = service.call("POST", "/v1/jobs", json={"model": "intents-kill", "train": dataset, "config": KILL_CONFIG})
    total = KILL_CONFIG["training"]["max_steps"]
    state = service.wait_job(job["id"], until=lambda j: j["step"] >= total // 3 or j["status"] != "queued"
                             and j["status"] != "running")
    killed_at = state["step"]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(30)
    log(f"worker killed at step {killed_at} of {total}")
    second = service.worker("worker-2")
    try:
        done = service.wait_job(job["id"])
    finally:
        second.kill()
    jobs = service.call("GET", "/v1/jobs")["jobs"]
    return {"killed_at_step": killed_at, "final_step": done["step"], "total_steps": done["total_steps"],
            "attempts": done["attempts"], "status": done["status"],
            "resumed_from_checkpoint": any("resuming from the last checkpoint" in line for line in done["log"]),
            "jobs_lost": sum(j["status"] != "succeeded" for j in jobs), "jobs": len(jobs)}


def render_jobs(entry: dict) -> list[str]:
    k = entry["kill"]
    return ["## jobs: through the API vs `goldmine train`", "",
            f"- direct `goldmine train`: {entry['direct_wall_s']} s; the same config as a job (upload, POST, poll "
            f"until succeeded): {entry['job_wall_s']} s: **overhead {entry['job_overhead']:+.1%}** (target <= +10%); "
            f"queue wait {entry['queue_wait_s']} s, the worker's run {entry['worker_run_s']} s, "
            f"{entry['job_cpu_seconds']} CPU-s billed",
            f"- worker killed with SIGKILL at step {k['killed_at_step']} of {k['total_steps']}: a second worker "
            f"resumed it from its checkpoint ({k['resumed_from_checkpoint']}), {k['status']} at step "
            f"{k['final_step']} after {k['attempts']} attempts; **jobs lost: {entry['jobs_lost']}** of {k['jobs']}"]


# ------------------------------------------------------------------------------------------------------- feedback

FIRST_SHARE = 0.25  # of banking77 train: what the first version is trained on
TRAFFIC = 2_000  # held-out train texts sent to the live version (corrections: the ones it gets wrong)
FEEDBACK_TRAINING = {"task": "classification", "model.name": "bundled", "model.pooling": "mean",
                     "model.max_length": 64, "training.epochs": 3, "training.batch_size": 32,
                     "training.learning_rate": 1e-4, "training.warmup_ratio": 0.1, "training.eval_strategy": "none",
                     "training.linear_probe": False, "training.seed": 42}


def _write(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows))
    return path


def _dev_accuracy(run: str | Path, dev: list[dict]) -> float:
    from goldmine.inference.model import Model

    answers = Model.load(run).predict([r["text"] for r in dev])
    return round(sum(a["label"] == r["label"] for a, r in zip(answers, dev, strict=True)) / len(dev), 4)


def bench_feedback(args) -> dict:
    """The loop through the server's own code: a first version on a quarter of banking77 train (dev as its test
    split, which the gate freezes), traffic from held-out train texts through the predict route, a correction for
    each wrong answer, `retrain` (the live data plus the corrections, gated), and a candidate trained on shuffled
    labels that the gate must refuse."""
    import shutil

    from fastapi.testclient import TestClient

    import goldmine
    from goldmine.serving.app import create_app
    from goldmine.serving.auth import create_key
    from goldmine.serving.db import open_database
    from goldmine.serving.feedback import set_keep_texts
    from goldmine.serving.gate import run_gate
    from goldmine.serving.registry import promote, register
    from goldmine.serving.retrain import retrain
    from goldmine.serving.settings import load_settings

    work = args.runs / "service-feedback"
    shutil.rmtree(work / "serving", ignore_errors=True)
    rng = random.Random(7)
    train = read_jsonl(DATA / "banking77" / "train.jsonl")
    dev = read_jsonl(DATA / "banking77" / "dev.jsonl")
    rng.shuffle(train)
    cut = int(len(train) * FIRST_SHARE)
    first, rest = train[:cut], train[cut:]
    traffic = rest[:TRAFFIC]
    dev_file = _write(dev, work / "data" / "dev.jsonl")
    first_file = _write(first, work / "data" / "first.jsonl")
    shuffled = [r["label"] for r in first]
    rng.shuffle(shuffled)
    bad_file = _write([{"text": r["text"], "label": label} for r, label in zip(first, shuffled, strict=True)],
                      work / "data" / "shuffled.jsonl")
    runs = {"first": work / "first", "shuffled": work / "shuffled"}
    for name, data in (("first", first_file), ("shuffled", bad_file)):
        if not (args.reuse and (runs[name] / "metrics.json").is_file()):
            log(f"training the {name} version on {data.name}")
            goldmine.train(None, **{**FEEDBACK_TRAINING, "data.train": str(data), "data.dev": str(dev_file),
                                    "data.test": str(dev_file), "output_dir": str(runs[name])})

    settings = load_settings(data_dir=str(work / "serving"), preload=False)
    db = open_database(settings)
    register(db, settings.registry_dir, "banking", runs["first"], "acme")
    set_keep_texts(db, "acme", True)
    key = create_key(db, "acme", "predict").key
    log(f"traffic: {len(traffic)} held-out train texts through the predict route")
    corrections = answered = 0
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": f"Bearer {key}"}
        for start in range(0, len(traffic), 32):
            batch = traffic[start:start + 32]
            reply = client.post("/v1/models/banking/predict", json={"texts": [r["text"] for r in batch]},
                                headers=auth)
            reply.raise_for_status()
            body = reply.json()
            for position, (row, answer) in enumerate(zip(batch, body["predictions"], strict=True)):
                answered += 1
                if answer["label"] != row["label"]:
                    sent = client.post("/v1/models/banking/feedback", headers=auth, json={
                        "request_id": body["request_id"], "position": position, "label": row["label"]})
                    sent.raise_for_status()
                    corrections += 1
    log(f"{corrections} corrections of {answered} answers; retraining")
    started = time.perf_counter()
    result = retrain(db, settings, "banking", "acme")
    retrain_s = time.perf_counter() - started
    bad = register(db, settings.registry_dir, "banking", runs["shuffled"], "acme", first_alias=None).version
    promote(db, "banking", bad, alias="shuffled", tenant="acme")
    bad_gate = run_gate(db, settings, "banking", bad, "acme")
    db.dispose()
    entry = {
        "dev_before": _dev_accuracy(runs["first"], dev),
        "dev_after": _dev_accuracy(result.run_dir, dev),
        "gate_passed": bool(result.gate and result.gate.passed),
        "bad_candidate_rejected": not bad_gate.passed,
        "bad_candidate_dev": _dev_accuracy(runs["shuffled"], dev),
        "traffic": answered, "corrections": corrections, "retrain_s": round(retrain_s, 1),
        "merge": {k: v for k, v in result.merge.to_dict().items() if not isinstance(v, list)},
        "gate": result.gate.to_dict() if result.gate else {"error": result.gate_error},
        "bad_gate": bad_gate.to_dict(),
        "settings": {"first_share": FIRST_SHARE, "first_examples": len(first), "training": FEEDBACK_TRAINING,
                     "tolerance": settings.feedback.tolerance, "class_tolerance": settings.feedback.class_tolerance,
                     "forgetting_tolerance": settings.feedback.forgetting_tolerance,
                     "holdout_fraction": settings.feedback.holdout_fraction},
        "model_dirs": {"first": str(runs["first"]), "retrained": result.run_dir, "shuffled": str(runs["shuffled"])},
    }
    log(f"dev {entry['dev_before']} -> {entry['dev_after']}; gate passed {entry['gate_passed']}; shuffled "
        f"candidate rejected {entry['bad_candidate_rejected']}")
    return entry


def render_feedback(entry: dict) -> list[str]:
    lines = ["## feedback: corrections become the next version (banking77)", "",
             f"- first version: {entry['settings']['first_examples']} banking77 train texts "
             f"({entry['settings']['first_share']:.0%}); {entry['traffic']} held-out train texts sent through the "
             f"predict route, {entry['corrections']} wrong answers corrected with feedback",
             f"- retrained on its data plus the corrections ({entry['retrain_s']} s): dev accuracy "
             f"**{entry['dev_before']} -> {entry['dev_after']}**; the gate passed it: {entry['gate_passed']}",
             f"- a candidate trained on shuffled labels (dev accuracy {entry['bad_candidate_dev']}): rejected by the "
             f"gate: **{entry['bad_candidate_rejected']}**", "",
             "| gate check | retrained | live | needed | passed |  | shuffled labels | passed |",
             "|---|---:|---:|---|---|---|---:|---|"]
    bad = {c["name"]: c for c in entry["bad_gate"]["checks"]}
    for check in entry["gate"].get("checks", []):
        other = bad.get(check["name"], {})

        def cell(value):
            return "-" if value is None else f"{value:.4f}"

        lines.append(f"| {check['name']} | {cell(check['candidate'])} | {cell(check['live'])} | {check['limit']} | "
                     f"{check['passed']} |  | {cell(other.get('candidate'))} | {other.get('passed', '-')} |")
    merge = entry["merge"]
    lines += ["", "Merge: " + ", ".join(f"{k} {v}" for k, v in merge.items())]
    return lines


SECTIONS = {"jobs": (bench_jobs, render_jobs), "drift": (bench_drift, render_drift),
            "feedback": (bench_feedback, render_feedback)}


# ------------------------------------------------------------------------------------------------------ results

def write(sections: dict, directory: Path) -> None:
    """service.json: the headline keys automated checks read at the top level, each section whole under
    `sections`; service.md: each section's table."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "service.json").write_text(json.dumps({**headline(sections), "sections": sections}, indent=2)
                                            + "\n")
    lines = ["# Fine-tuning as a service", ""]
    for name, (_, render) in SECTIONS.items():
        if name not in sections:
            continue
        entry = sections[name]
        m, prov = entry["machine"], entry["provenance"]
        lines += render(entry)
        lines += ["", f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores), torch {m['versions'].get('torch')}; "
                  f"by `{prov['command']}` at commit {prov['git_commit']}"
                  + (" (uncommitted changes)" if prov.get("git_dirty") else "") + "."
                  + (f" Note: {entry['note']}" if entry.get("note") else ""), ""]
    (directory / "service.md").write_text("\n".join(lines))


def headline(results: dict) -> dict:
    """The keys automated checks read, copied from the sections that measured them."""
    out = {}
    if "jobs" in results:
        out["job_overhead"], out["jobs_lost"] = results["jobs"]["job_overhead"], results["jobs"]["jobs_lost"]
    if "drift" in results:
        out["drift"] = {k: results["drift"][k] for k in ("false_alarm_rate", "detection_delay_requests")}
    if "feedback" in results:
        out["feedback"] = {k: results["feedback"][k] for k in ("dev_before", "dev_after", "bad_candidate_rejected")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench", help="where models and work go")
    parser.add_argument("--reuse", action="store_true", help="reuse a trained model instead of training again")
    parser.add_argument("--note", default=None, help="how the run was made (e.g. what else ran beside it)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where service.json/.md are written")
    args = parser.parse_args()
    names = args.only.split(",")
    if unknown := [n for n in names if n not in SECTIONS]:
        parser.error(f"unknown {', '.join(unknown)}: choose from {', '.join(SECTIONS)}")
    for name in names:
        entry = SECTIONS[name][0](args)
        entry["machine"] = machine_info()
        entry["provenance"] = provenance(entry.get("model_dirs"))
        if args.note:
            entry["note"] = args.note
        path = args.results / "service.json"
        sections = json.loads(path.read_text()).get("sections", {}) if path.is_file() else {}
        write(sections | {name: entry}, args.results)
        print(json.dumps({name: {k: v for k, v in entry.items() if not isinstance(v, dict | list)}}, indent=2))


if __name__ == "__main__":
    main()
