"""Applications benchmark (issue 15): each app measured on real data from ../shared/data, one section per app.

    python bench/apps.py                           # every app (hours on 2 cores: run it in the background)
    python bench/apps.py --only monitor            # train (or --reuse) the models, then measure (long: background)
    python bench/apps.py --only monitor --reuse    # measure finished runs in runs/bench/monitor_{fpb,twitter}
    python bench/apps.py --only support,recommend,medfaq --collect   # gather what their own scripts measured last

support, recommend and medfaq each have their own script (bench/apps_support.py, bench/recommend.py,
bench/medfaq.py: the method is described there), which trains what it lacks and writes a detailed result file;
their section here runs it and copies the headline keys, with the detailed file's own provenance (the commit and
command that measured them). `--collect` only copies.

Results merge into bench/results/apps.json and .md: a run of some sections rewrites only theirs. Every section
carries its provenance (git commit, command line, model directories, machine, date). To add an app, write
`bench_<app>(args) -> dict` and `render_<app>(entry) -> list[str]` and add them to SECTIONS.

monitor (financial sentiment monitor, goldmine.apps.monitor):
- accuracy and macro-F1 on the financial_phrasebank all-agree dev split and the twitter_financial_news_sentiment
  dev split of the monitor's one sentiment model: the bundled MiniLM fine-tuned by `goldmine train` on both train
  splits together (bench/configs/monitor_combined.yaml: labels mapped to negative/neutral/positive, phrasebank
  twice; fixed schedule, no selection on dev), measured through the served inference path. Models fine-tuned on one
  set alone (monitor_fpb.yaml, monitor_twitter.yaml) are measured beside it when their runs exist (`--also`);
- items/s of the whole pipeline (read, sentiment, companies, aggregates, rules, store, deliver) on
  financial_news/headlines.csv in this process, and with the model on 2 local Ray Data workers (`backfill`);
- alert delivery latency (alert committed -> the signed webhook received it) and `alerts_lost`: an ingest process
  is killed with SIGKILL mid-stream while the webhook is down, restarted with the webhook up, and its delivered
  alerts are compared with an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine_info, provenance  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONFIGS = ROOT / "bench" / "configs"
SECRET = "bench-monitor-secret-0123456789"


def _relative(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# ---------------------------------------------------------------------------------------------- monitor: accuracy

MONITOR_DEV = {  # result key prefix: (data folder, label -> polarity or None to keep)
    "fpb": ("financial_phrasebank", None),
    "twitter": ("twitter_financial_news_sentiment", {"0": "negative", "1": "positive", "2": "neutral"}),
}
MONITOR_MODELS = {  # name: (config, the data sets its train file holds with their repeats, dev sets it answers)
    "combined": ("monitor_combined.yaml", {"fpb": 2, "twitter": 1}, ["fpb", "twitter"]),
    "fpb": ("monitor_fpb.yaml", {"fpb": 1}, ["fpb"]),
    "twitter": ("monitor_twitter.yaml", {"twitter": 1}, ["twitter"]),
}
MONITOR_TARGETS = {"fpb_accuracy": 0.97, "twitter_accuracy": 0.88}


def _finished(run_dir: Path) -> bool:
    return (run_dir / "goldmine.json").is_file() and (run_dir / "metrics.json").is_file()


def monitor_data(name: str, data_root: Path, runs: Path) -> tuple[Path, dict[str, Path]]:
    """The train file of model `name` and the dev files it is measured on, written under runs/data/ (never into
    the repository): labels mapped to polarities, the train sets concatenated with their repeats. A single set
    unmapped is its own files."""
    _, repeats, devs = MONITOR_MODELS[name]
    out = runs / "data"
    out.mkdir(parents=True, exist_ok=True)

    def mapped(key: str, split: str, times: int = 1) -> list[str]:
        folder, labels = MONITOR_DEV[key]
        text = (data_root / folder / f"{split}.jsonl").read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.split("\n") if line.strip()]  # not splitlines: U+2028 in tweets
        if labels is not None and name == "combined":
            rows = [{**r, "label": labels[str(r["label"])]} for r in rows]
        return [json.dumps(r) for r in rows] * times  # ASCII: a raw U+2028 would split a line for some readers

    if len(repeats) == 1:
        train = data_root / MONITOR_DEV[devs[0]][0] / "train.jsonl"
    else:
        train = out / f"monitor_{name}_train.jsonl"
        train.write_text("\n".join(line for key, times in repeats.items() for line in mapped(key, "train", times))
                         + "\n")
    dev_files = {}
    for key in devs:
        if name == "combined" and MONITOR_DEV[key][1] is not None:
            dev_files[key] = out / f"{key}_dev_polarity.jsonl"
            dev_files[key].write_text("\n".join(mapped(key, "dev")) + "\n")
        else:
            dev_files[key] = data_root / MONITOR_DEV[key][0] / "dev.jsonl"
    return train, dev_files


def train_or_reuse(name: str, data_root: Path, runs: Path, reuse: bool) -> tuple[Path, dict]:
    """The fine-tuned run of `name` (trained now, or with `reuse` a finished one whose settings match)."""
    import goldmine
    from goldmine.config import load_config

    config_file = MONITOR_MODELS[name][0]
    train, devs = monitor_data(name, data_root, runs)
    first_dev = next(iter(devs.values()))
    config = load_config(CONFIGS / config_file, {
        "data.train": str(train), "data.dev": str(first_dev),
        "data.test": str(first_dev),  # measured on dev: the test splits are held back
        "output_dir": str(runs / f"monitor_{name}")})
    run_dir = config.output_dir
    info: dict = {"reused": False}
    if reuse and _finished(run_dir):
        recorded = load_config(run_dir / "config.yaml")
        wanted = config.model_dump(mode="json", exclude={"output_dir", "data"})
        got = recorded.model_dump(mode="json", exclude={"output_dir", "data"})
        differ = {k: (got.get(k), v) for k, v in wanted.items() if got.get(k) != v}
        if differ:
            raise SystemExit(f"--reuse: {run_dir}/config.yaml differs from {config_file}: {differ}")
        info["reused"] = True
    else:
        result = goldmine.train(config)
        info["train_seconds"] = round(result.train_seconds, 1)
    meta = json.loads((run_dir / "goldmine.json").read_text())["extra"]
    info["train_seconds"] = info.get("train_seconds") or meta.get("train_seconds")
    info["train_examples_per_s"] = meta.get("train_examples_per_second")
    return run_dir, info


def accuracy(dev_file: Path, run_dir: Path) -> dict:
    import goldmine

    metrics = goldmine.evaluate(run_dir, dev_file)  # runtime auto: what a server runs
    return {"accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
            "dev_examples": metrics["n_examples"], "runtime": metrics["runtime"]["runtime"]}


# ---------------------------------------------------------------------------------------------- monitor: pipeline

class Receiver:
    """A webhook receiver: records each delivery's alert id and arrival time; `down` answers 503."""

    def __init__(self):
        from goldmine.apps.monitor.sinks import verify_signature

        self.arrivals: list[tuple[str, float, bool]] = []  # (alert id, unix time, signature ok)
        self.down = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if owner.down:
                    self.send_response(503)
                else:
                    owner.arrivals.append((self.headers["X-Goldmine-Alert-Id"], time.time(),
                                           verify_signature(SECRET.encode(), body, self.headers)))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _monitor_setup(work: Path, model_dir: Path, receiver_url: str, name: str, engine: str = "local"):
    """A fresh serving database under `work/name` with the model registered, and the shipped monitor config
    (configs/apps/monitor.yaml: alias table, rules) pointed at it and at the receiver. Returns (settings, db, config
    path)."""
    import shutil

    import yaml

    from goldmine.serving.db import open_database
    from goldmine.serving.registry import register
    from goldmine.serving.settings import load_settings

    directory = work / name
    shutil.rmtree(directory, ignore_errors=True)
    settings = load_settings(data_dir=directory / "serving", preload=False)
    db = open_database(settings)
    register(db, settings.registry_dir, "fin-sentiment", model_dir, "acme")
    config = yaml.safe_load((ROOT / "configs" / "apps" / "monitor.yaml").read_text())
    labels = json.loads((model_dir / "goldmine.json").read_text())["label_names"]
    if set(labels) != {"0", "1", "2"}:
        config.pop("label_map")  # a phrasebank model: negative/neutral/positive already
    config["aliases_file"] = str(ROOT / "configs" / "apps" / config["aliases_file"])
    config["sinks"] = [{"type": "webhook", "url": receiver_url, "secret": SECRET,
                        "retry": {"base_seconds": 0.5, "max_seconds": 2}}]
    config["backfill"] = {"engine": engine, "workers": 2, "batch_size": 64}
    path = directory / "monitor.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (directory / "serving.yaml").write_text(yaml.safe_dump({"data_dir": str(settings.data_dir),
                                                            "database_url": settings.url}))
    return settings, db, path


def _alert_ids(db) -> set[str]:
    from sqlalchemy import select

    from goldmine.apps.monitor.store import MonitorAlert

    with db.session() as s:
        return set(s.scalars(select(MonitorAlert.id)))


def pipeline(model_dir: Path, headlines: Path, work: Path, ray_workers: int) -> dict:
    import torch

    from goldmine.apps.base import load_app_config
    from goldmine.apps.monitor import api

    torch.set_num_threads(os.cpu_count() or 1)
    receiver = Receiver()
    out: dict = {"headlines": str(headlines), "model_dir": _relative(model_dir)}
    try:
        # 1. the whole pipeline in this process, alerts to the webhook as they are raised
        _, db, config_path = _monitor_setup(work, model_dir, receiver.url, "local")
        run = api.open_monitor(load_app_config(config_path, "monitor"), db)
        report = api.ingest(run, headlines)
        delivered_at = {i: t for i, t, _ in receiver.arrivals}
        latencies = [1000 * (delivered_at[a.id] - a.created_at.replace(tzinfo=UTC).timestamp())
                     for a in report.alerts if a.id in delivered_at]
        reference = _alert_ids(db)
        out.update({
            "items": report.items, "malformed_records": [str(i) for i in report.issues], "alerts": len(reference),
            "items_per_s": round(report.items_per_second, 1), "seconds": round(report.seconds, 1),
            "alert_latency_ms": {"p50": round(statistics.median(latencies), 1),
                                 "p95": round(sorted(latencies)[int(0.95 * (len(latencies) - 1))], 1),
                                 "max": round(max(latencies), 1), "alerts": len(latencies)} if latencies else None,
            "signatures_verified": all(ok for _, _, ok in receiver.arrivals),
        })
        db.dispose()

        # 2. the same history as a Ray Data backfill (2 local workers)
        if ray_workers:
            receiver.arrivals.clear()
            _, db, config_path = _monitor_setup(work, model_dir, receiver.url, "ray", engine="ray")
            run = api.open_monitor(load_app_config(config_path, "monitor"), db)
            started = time.perf_counter()
            report = api.backfill(run, headlines, workers=ray_workers)
            out["ray"] = {"workers": ray_workers, "items_per_s": round(report.items / (time.perf_counter() - started),
                                                                      1),
                          "same_alerts_as_local": _alert_ids(db) == reference, "items": report.items}
            db.dispose()

        # 3. SIGKILL mid-stream while the webhook is down; restart with it up; count what never arrived
        receiver.arrivals.clear()
        receiver.down = True
        settings, db, config_path = _monitor_setup(work, model_dir, receiver.url, "killed")
        command = [sys.executable, "-m", "goldmine.cli", "app", "monitor", "ingest", str(headlines), "--app-config",
                   str(config_path), "--config", str(config_path.parent / "serving.yaml")]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed_at = _wait_for_line(db, process, report.items // 2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        raised_before_kill = len(_alert_ids(db))
        receiver.down = False
        restarted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=7200)
        deadline = time.monotonic() + 60
        while {i for i, _, _ in receiver.arrivals} < reference and time.monotonic() < deadline:
            subprocess.run([*command[:5], "deliver", *command[7:]], env=env, capture_output=True, timeout=600)
        received = [i for i, _, _ in receiver.arrivals]
        out["kill_9"] = {
            "killed_at_line": killed_at, "alerts_before_kill": raised_before_kill,
            "restart_exit_code": restarted.returncode, "alerts_raised": len(_alert_ids(db)),
            "same_alerts_as_uninterrupted": _alert_ids(db) == reference,
            "alerts_received": len(set(received)), "received_twice": len(received) - len(set(received)),
        }
        out["alerts_lost"] = len(reference - set(received))
        db.dispose()
    finally:
        receiver.close()
    return out


def _wait_for_line(db, process, line: int) -> int:
    from sqlalchemy import select

    from goldmine.apps.monitor.store import MonitorSource

    while process.poll() is None:
        with db.session() as s:
            row = s.scalar(select(MonitorSource))
            if row is not None and row.line >= line:
                return row.line
        time.sleep(0.05)
    raise SystemExit("the ingest process ended before it could be killed mid-stream")


def bench_monitor(args) -> dict:
    """The headline figures come from the combined model (the one the monitor runs); `--also fpb,twitter` adds
    the single-set models, measured only if their runs are finished (never trained here)."""
    entry: dict = {"models": {}}
    run_dir, info = train_or_reuse("combined", args.data, args.runs, args.reuse)
    runs = {"combined": run_dir}
    for name in ["combined", *[n for n in args.also.split(",") if n]]:
        if name != "combined":
            if not _finished(args.runs / f"monitor_{name}"):
                continue
            run_dir, info = train_or_reuse(name, args.data, args.runs, reuse=True)
            runs[name] = run_dir
        _, devs = monitor_data(name, args.data, args.runs)
        scores = {key: accuracy(dev, run_dir) for key, dev in devs.items()}
        entry["models"][name] = {"dev": scores, **info, "model_dir": _relative(run_dir)}
        if name == "combined":
            for key, measured in scores.items():
                entry[f"{key}_accuracy"] = measured["accuracy"]
                entry[f"{key}_macro_f1"] = measured["macro_f1"]
    measured = pipeline(runs["combined"], args.data / "financial_news" / "headlines.csv",
                        args.runs / "monitor-pipeline", args.ray_workers)
    entry["items_per_s"] = measured["items_per_s"]
    entry["alerts_lost"] = measured["alerts_lost"]
    entry["pipeline"] = measured
    entry["targets"] = MONITOR_TARGETS
    entry["model_dirs"] = {name: _relative(path) for name, path in runs.items()}
    return entry


def render_monitor(entry: dict) -> list[str]:
    p = entry["pipeline"]
    lines = ["## monitor: financial sentiment monitor", "",
             "| measure | value | target |", "|---|---:|---:|"]
    for key in ("fpb_accuracy", "fpb_macro_f1", "twitter_accuracy", "twitter_macro_f1"):
        lines.append(f"| {key} (dev), combined model | {entry[key]:.4f} | {entry['targets'].get(key, '-')} |")
    lines.append(f"| items/s, whole pipeline, this process ({p['items']} headlines) | {entry['items_per_s']} | - |")
    if "ray" in p:
        lines.append(f"| items/s, model on {p['ray']['workers']} local Ray Data workers | {p['ray']['items_per_s']} | "
                     f"- |")
    if p.get("alert_latency_ms"):
        lat = p["alert_latency_ms"]
        lines.append(f"| alert delivery latency p50 / p95 ms ({lat['alerts']} alerts) | {lat['p50']} / {lat['p95']} |"
                     f" - |")
    lines.append(f"| alerts lost after SIGKILL mid-stream with the webhook down | {entry['alerts_lost']} | 0 |")
    k = p["kill_9"]
    lines += ["", "| model (fine-tuned on) | fpb dev accuracy / macro-F1 | twitter dev accuracy / macro-F1 "
              "| train s |", "|---|---:|---:|---:|"]
    for name, model in entry["models"].items():
        cells = [f"{model['dev'][k]['accuracy']:.4f} / {model['dev'][k]['macro_f1']:.4f}" if k in model["dev"]
                 else "-" for k in ("fpb", "twitter")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {model.get('train_seconds')} |")
    lines += ["", f"Pipeline model: {p['model_dir']}. {p['alerts']} alerts on the uninterrupted run; the killed run "
              f"stopped at line {k['killed_at_line']} with {k['alerts_before_kill']} alerts queued, and after the "
              f"restart raised the same alerts: {k['same_alerts_as_uninterrupted']}; {k['alerts_received']} received, "
              f"{k['received_twice']} twice. Malformed records reported: {len(p['malformed_records'])} "
              f"({'; '.join(r.split(': ', 1)[0] for r in p['malformed_records'])})."]
    return lines


# ------------------------------------------------------------- support, recommend, medfaq: their own scripts

APP_SCRIPTS = {  # section: (script, its result file, the arguments of a full run)
    "support": ("apps_support.py", "apps_support.json", ["--train", "clinc150", "--train", "bitext"]),
    "recommend": ("recommend.py", "recommend.json", []),
    "medfaq": ("medfaq.py", "medfaq.json", []),
}


def run_app_script(name: str, args) -> dict:
    """Run the app's own benchmark script (it trains what it lacks and writes its detailed result file), unless
    `--collect`, then read that file. The detailed file keeps its own provenance: the commit and command that
    measured it, which is what the section reports (collecting is not measuring)."""
    script, result, full = APP_SCRIPTS[name]
    if not args.collect:
        subprocess.run([sys.executable, str(ROOT / "bench" / script), *full], check=True)
    path = args.results / result
    if not path.is_file():
        raise SystemExit(f"{_relative(path)} does not exist: run python bench/{script} (or drop --collect)")
    return json.loads(path.read_text())


def _measured_by(detail: dict, result: str) -> dict:
    keys = ("git_commit", "git_dirty", "command", "model_dirs")
    return {"detail": f"bench/results/{result}", "provenance": {k: detail.get(k) for k in keys},
            "machine": detail["machine"]}


def bench_support(args) -> dict:
    detail = run_app_script("support", args)
    section = detail["support"]
    entry = {k: section[k] for k in ("intent_accuracy", "oos_recall", "handoff_f1", "p99_ms", "p50_ms")}
    entry["datasets"] = {name: {k: d.get(k) for k in ("texts", "intent_accuracy", "oos_recall", "handoff_precision",
                                                      "handoff_recall", "handoff_f1", "answer_accuracy", "answered")}
                         for name, d in section["datasets"].items()}
    entry["latency"], entry["missing"] = section["latency"], section["missing"]
    return entry | _measured_by(detail, "apps_support.json")


def render_support(entry: dict) -> list[str]:
    lines = ["## support: customer-service assistant", "",
             f"Headline: intent accuracy {entry['intent_accuracy']} (mean over the data sets), out-of-scope recall "
             f"{entry['oos_recall']} (clinc150), hand-off F1 {entry['handoff_f1']} (pooled), HTTP p50 "
             f"{entry['p50_ms']} ms / p99 {entry['p99_ms']} ms (one message at a time).", "",
             "| data set | texts | intent acc | OOS recall | hand-off P / R / F1 | answer acc | answered |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for name, d in entry["datasets"].items():
        lines.append(f"| {name} | {d['texts']} | {d['intent_accuracy']} | {d['oos_recall'] or '-'} | "
                     f"{d['handoff_precision'] or '-'} / {d['handoff_recall'] or '-'} / {d['handoff_f1'] or '-'} | "
                     f"{d['answer_accuracy']} | {d['answered']} |")
    lines += [f"\nNot measured: {name}: {why}" for name, why in entry["missing"].items()]
    return lines + ["", f"Details: {entry['detail']} (method: bench/apps_support.py)."]


def bench_recommend(args) -> dict:
    detail = run_app_script("recommend", args)
    entry = {key: detail[key] for key in ("recall10", "ndcg10", "cold_recall10")}
    entry["latency"], entry["timing"], entry["protocol"] = detail.get("latency"), detail["timing"], detail["protocol"]
    entry["latency_http"] = detail.get("latency_http")
    return entry | _measured_by(detail, "recommend.json")


def render_recommend(entry: dict) -> list[str]:
    lines = ["## recommend: text-based recommender (MovieLens ml-latest-small, leave-last-5-out)", "",
             "| method | recall@10 | nDCG@10 |", "|---|---:|---:|"]
    for method in ("popularity", "untuned", "goldmine"):
        lines.append(f"| {method} | {entry['recall10'][method]:.4f} | {entry['ndcg10'][method]:.4f} |")
    lines += ["", f"Cold start (items with no training ratings, ranked among the new items): recall@10 "
              f"{entry['cold_recall10']:.4f}. Latency: {json.dumps(entry['latency'])}.",
              f"Latency through the API: {json.dumps(_http_figures(entry.get('latency_http')))}.",
              f"Details: {entry['detail']} (method: bench/recommend.py)."]
    return lines


def _http_figures(latency: dict | None) -> dict | None:
    return latency and {k: latency[k] for k in ("calls", "p50_ms", "p90_ms", "p99_ms")}


def bench_medfaq(args) -> dict:
    detail = run_app_script("medfaq", args)
    keys = ("pair_accuracy", "mrr10", "pii_recall", "pii_precision", "handoff_rate_removed_topics",
            "answer_rate_present_topics", "answer_accuracy_present_topics", "latency_ms")
    return {key: detail.get(key) for key in keys} | _measured_by(detail, "medfaq.json")


def render_medfaq(entry: dict) -> list[str]:
    lines = ["## medfaq: medical FAQ with privacy", "", "| measure | value |", "|---|---:|"]
    lines += [f"| {key} | {entry[key]} |" for key in ("pair_accuracy", "mrr10", "pii_recall", "pii_precision",
                                                     "handoff_rate_removed_topics", "answer_rate_present_topics",
                                                     "answer_accuracy_present_topics", "latency_ms")]
    return lines + ["", f"Details: {entry['detail']} (method: bench/medfaq.py)."]


SECTIONS = {"monitor": (bench_monitor, render_monitor), "support": (bench_support, render_support),
            "recommend": (bench_recommend, render_recommend), "medfaq": (bench_medfaq, render_medfaq)}


# ------------------------------------------------------------------------------------------------------ results

def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write(results: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "apps.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Applications benchmark", ""]
    for name, entry in results.items():
        if not isinstance(entry, dict) or "provenance" not in entry:
            continue
        m, prov = entry["machine"], entry["provenance"]
        dirty = " (uncommitted changes)" if prov.get("git_dirty") else ""
        render = SECTIONS.get(name, (None, None))[1]
        lines += (render(entry) if render else [f"## {name}", "", "```", json.dumps(entry, indent=2), "```"])
        lines += ["", f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB), torch "
                  f"{m['versions'].get('torch')}, transformers {m['versions'].get('transformers')}; by "
                  f"`{prov['command']}` at commit {prov['git_commit']}{dirty}." + (f" Note: {entry['note']}"
                                                                                 if entry.get("note") else ""), ""]
    (directory / "apps.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="shared data root")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench", help="where models and work go")
    parser.add_argument("--reuse", action="store_true", help="measure finished runs instead of training again")
    parser.add_argument("--also", default="fpb,twitter", help="monitor: single-set models measured beside the "
                        "combined one when their runs in --runs are finished (they are never trained here)")
    parser.add_argument("--ray-workers", type=int, default=2, help="monitor: Ray workers (0: skip Ray)")
    parser.add_argument("--collect", action="store_true", help="support, recommend, medfaq: read the result file "
                        "their own script wrote last instead of running it")
    parser.add_argument("--note", default=None, help="how the run was made (e.g. what else ran beside it)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where apps.json/.md are written")
    args = parser.parse_args()
    names = args.only.split(",")
    if unknown := [n for n in names if n not in SECTIONS]:
        parser.error(f"unknown {', '.join(unknown)}: choose from {', '.join(SECTIONS)}")
    for name in names:
        entry = SECTIONS[name][0](args)
        entry.setdefault("machine", machine_info())
        entry.setdefault("provenance", provenance(entry.get("model_dirs")))
        if args.note:
            entry["note"] = args.note
        results = _load(args.results / "apps.json")  # again: another section may have been written meanwhile
        results[name] = entry
        write(results, args.results)
        print(json.dumps({name: {k: v for k, v in entry.items() if not isinstance(v, dict)}}, indent=2))


if __name__ == "__main__":
    main()
