"""Support assistant benchmark (issue 15, part 1): intent accuracy, out-of-scope recall, hand-off precision/recall/F1
and answer accuracy on held-out data, and the latency of one message through the HTTP API.

    python bench/apps_support.py --runs /work/main/runs/bench            # every dataset whose model is trained
    python bench/apps_support.py --train bitext --train clinc150         # fine-tune the missing models first
    python bench/apps_support.py --only banking77 --limit 500 --no-serve

Datasets (../shared/data, never copied into the repository):
- banking77 dev: intents only (no out-of-scope, no hand-off intents); model runs/bench/banking77
  (`bench/accuracy.py --only banking77`, about 40 minutes on 2 cores);
- clinc150 dev: 150 intents + `oos` (100 dev texts), the out-of-scope recall; model runs/bench/clinc150, trained here
  with `oos` as an explicit class (3 epochs of 15,100 texts, 1,416 steps: the training default, as
  bench/fewshot.py's clinc150 section trains it);
- bitext customer support (`customer_support/bitext_v11.jsonl`, 26,872 requests with agent responses and 27
  intents), split by a hash of the request text (1 in 10 held out), so a request and its near-duplicates with the
  same text never fall on both sides; model runs/bench/support_bitext (3 epochs of ~24,000 texts, 2,270 steps:
  about 35 minutes on 2 idle cores). Complaints (`complaint`) and requests for a person (`contact_human_agent`) are
  the hand-off ground truth here, as `oos` is in clinc150.

The decision measured is `goldmine.apps.support.assistant.respond`, the function the API and the HTTP routes call,
on the model's batched predictions and the response index's hits (storage is left out: it is the same for every
message and the HTTP latency includes it). The response base is built from the training split: up to
`PER_INTENT` messages per intent, each with its agent response (bitext) or a stand-in answer naming the intent
(banking77, clinc150 have no responses: answer accuracy only asks whether the answer is one of the right intent).

Metrics, per dataset:
- intent_accuracy: in-scope texts whose reply intent is the gold intent (an out-of-scope flag counts as wrong);
- oos_recall: out-of-scope texts (clinc150 `oos`) the reply flags out of scope;
- handoff precision/recall/F1: a reply with a hand-off against the ground truth (out of scope, complaint, asks for
  a person); the headline `handoff_f1` pools the counts of every dataset that has hand-off ground truth;
- answer_accuracy: replies with an answer whose response-base entry is of the gold intent; `answered`: their share;
- p50_ms / p99_ms: one `POST /v1/apps/support/messages` at a time to a `goldmine serve` subprocess (the bitext
  model when trained, else the first trained one), after a warm-up.

Results: bench/results/apps_support.json and .md; `support_section()` returns the section `bench/apps.py` reads
(`intent_accuracy`: the mean over the datasets measured, `oos_recall`: clinc150's, `handoff_f1`, `p99_ms`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine_info, provenance  # noqa: E402
from runs import free_port, wait_until_ready  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data"
PER_INTENT = 20
HELD_OUT = 10  # 1 in HELD_OUT bitext requests (by text hash) is held out
LATENCY_CALLS = 200


@dataclass(frozen=True)
class Dataset:
    run: str  # the model's folder under --runs
    train: str  # file under ../shared/data (bitext: the one file, split by hash)
    dev: str | None
    label: str = "label"
    answer: str | None = None  # the field holding the agent's response
    oos: str | None = None  # the out-of-scope label
    handoff_intents: tuple[str, ...] = ()  # intents whose messages should be handed off
    training: tuple[tuple[str, object], ...] = ()  # goldmine.train overrides for --train


DATASETS = {
    "banking77": Dataset("banking77", "banking77/train.jsonl", "banking77/dev.jsonl"),
    "clinc150": Dataset("clinc150", "clinc150/train.jsonl", "clinc150/dev.jsonl", oos="oos",
                        training=(("training.epochs", 3), ("out_of_scope.label", "oos"),
                                  ("out_of_scope.method", "auto"))),
    "bitext": Dataset("support_bitext", "customer_support/bitext_v11.jsonl", None, label="intent", answer="response",
                      handoff_intents=("complaint", "contact_human_agent"), training=(("training.epochs", 1),)),
}
COMMON_TRAINING = {"task": "classification", "model.name": "bundled", "model.pooling": "mean", "model.max_length": 64,
                   "training.batch_size": 32, "training.learning_rate": 1e-4, "training.warmup_ratio": 0.1,
                   "training.eval_strategy": "none", "training.seed": 42}


def held_out(text: str) -> bool:
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) % HELD_OUT == 0


def read(dataset: Dataset) -> tuple[list[dict], list[dict]]:
    """(train rows, held-out rows), each {text, intent, answer}."""
    def rows(path: Path) -> list[dict]:
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                out.append({"text": record["text"], "intent": str(record[dataset.label]),
                            "answer": record.get(dataset.answer) if dataset.answer else None})
        return out

    train = rows(DATA / dataset.train)
    if dataset.dev is not None:
        return train, rows(DATA / dataset.dev)
    return [r for r in train if not held_out(r["text"])], [r for r in train if held_out(r["text"])]


def train_model(name: str, runs: Path) -> Path:
    """Fine-tune the bundled encoder on the dataset's training split (see the module docstring for durations)."""
    import goldmine

    dataset = DATASETS[name]
    train, _ = read(dataset)
    data = runs / f"{dataset.run}-data" / "train.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps({"text": r["text"], "label": r["intent"]}) + "\n" for r in train))
    goldmine.train(None, **{**COMMON_TRAINING, **dict(dataset.training), "data.train": str(data),
                            "output_dir": str(runs / dataset.run)})
    return runs / dataset.run


def fit_out_of_scope(name: str, runs: Path) -> dict:
    """Fit a trained run's out-of-scope threshold (`out_of_scope.method: auto`) on the dev split its training cut
    from train, exactly as `goldmine train` does after training when the setting is on: the weights are not
    touched. For a run trained before DATASETS asked for `auto` (it had the `oos` class alone)."""
    from goldmine.config import load_config
    from goldmine.data.splits import load_splits
    from goldmine.inference import out_of_scope

    run = runs / DATASETS[name].run
    config = load_config(run / "config.yaml", {"out_of_scope.method": "auto"})
    splits = load_splits(config.data, False, out_of_scope_label=config.out_of_scope.label)
    report = out_of_scope.fit_and_store(run, splits["dev"], None, config.out_of_scope,
                                        config.training.eval_batch_size, train=splits["train"])
    config.to_yaml(run / "config.yaml")
    return report


def response_entries(dataset: Dataset, train: list[dict]) -> list:
    from goldmine.retrieval.index import Entry

    entries, seen = [], {}
    for row in train:
        intent = row["intent"]
        if intent == dataset.oos or seen.get(intent, 0) >= PER_INTENT:
            continue
        seen[intent] = seen.get(intent, 0) + 1
        answer = row["answer"] or f"[the answer for {intent}]"
        entries.append(Entry(f"{intent}-{seen[intent]}", row["text"], {"intent": intent, "answer": answer}))
    return entries


def support_config(dataset: Dataset):
    from goldmine.apps.support.config import SupportConfig

    return SupportConfig.model_validate({
        "app": "support", "tenant": "bench", "models": {"intent": {"name": "bench-support"},
                                                        "responses": {"name": "bench-support", "index": "responses"}},
        "out_of_scope_labels": [dataset.oos] if dataset.oos else [], "complaint_intents": ["complaint"],
        "human_intents": ["contact_human_agent"]})


def measure(name: str, model_dir: Path, limit: int | None) -> dict:
    """The dataset's metrics through `respond` (see the module docstring)."""
    from goldmine.apps.support.assistant import respond
    from goldmine.inference.model import Model
    from goldmine.retrieval.index import Index

    dataset = DATASETS[name]
    train, dev = read(dataset)
    if limit:
        dev = dev[:: max(1, len(dev) // limit)][:limit]  # spread over the file (dev files are grouped by label)
    config = support_config(dataset)
    model = Model.load(model_dir, runtime="torch")  # as served below (the copy leaves exports out): embeddings
    with tempfile.TemporaryDirectory() as tmp:
        index = Index.build(model_dir, response_entries(dataset, train), "responses", out=Path(tmp) / "responses",
                            model=model)
    intent_of = {e.id: e.payload["intent"] for e in index.entries}
    texts = [r["text"] for r in dev]
    started = time.perf_counter()
    predictions = model.predict(texts)
    hits = index.search(texts, config.candidates, model=model)
    seconds = time.perf_counter() - started
    counts = dict.fromkeys(("in_scope", "intent_right", "oos", "oos_caught", "tp", "fp", "fn", "answered",
                            "answer_right"), 0)
    reasons: dict[str, int] = {}
    for row, prediction, found in zip(dev, predictions, hits, strict=True):
        reply = respond(config, row["text"], prediction, found, None)
        is_oos = row["intent"] == dataset.oos
        should = is_oos or row["intent"] in dataset.handoff_intents
        handed = reply["handoff"] is not None
        if handed:
            reasons[reply["handoff"]["reason"]] = reasons.get(reply["handoff"]["reason"], 0) + 1
        counts["tp"] += should and handed
        counts["fp"] += handed and not should
        counts["fn"] += should and not handed
        if is_oos:
            counts["oos"] += 1
            counts["oos_caught"] += reply["out_of_scope"]
        else:
            counts["in_scope"] += 1
            counts["intent_right"] += not reply["out_of_scope"] and reply["intent"] == row["intent"]
        if reply["answer"] is not None:
            counts["answered"] += 1
            counts["answer_right"] += intent_of.get(reply["answer_id"]) == row["intent"]
    has_truth = bool(dataset.oos or dataset.handoff_intents)
    return {
        "model_dir": str(model_dir), "texts": len(dev), "response_entries": len(index.entries),
        "intent_accuracy": _ratio(counts["intent_right"], counts["in_scope"]),
        "oos_recall": _ratio(counts["oos_caught"], counts["oos"]) if dataset.oos else None,
        **(_prf(counts["tp"], counts["fp"], counts["fn"]) if has_truth else
           {"handoff_precision": None, "handoff_recall": None, "handoff_f1": None}),
        "handoff_rate": _ratio(sum(reasons.values()), len(dev)), "handoff_reasons": reasons,
        "answer_accuracy": _ratio(counts["answer_right"], counts["answered"]),
        "answered": _ratio(counts["answered"], len(dev)),
        "messages_per_s": round(len(dev) / seconds, 1), "counts": counts, "threshold": config.threshold,
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = round(2 * precision * recall / (precision + recall), 4) if precision and recall else 0.0
    return {"handoff_precision": precision, "handoff_recall": recall, "handoff_f1": f1}



def http_latency(name: str, model_dir: Path, calls: int = LATENCY_CALLS) -> dict:
    """p50/p99 of one message at a time through `goldmine serve` (a subprocess) with the support app set up."""
    import httpx
    import yaml

    from goldmine.retrieval.index import Index
    from goldmine.serving.auth import create_key
    from goldmine.serving.db import open_database
    from goldmine.serving.registry import register
    from goldmine.serving.settings import load_settings

    dataset = DATASETS[name]
    train, dev = read(dataset)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tmp / "run"  # a copy, so the index is built (and registered) without writing into the run
        shutil.copytree(model_dir, run, ignore=shutil.ignore_patterns("checkpoints", "onnx", "logs", "*.png"))
        Index.build(run, response_entries(dataset, train), "responses")
        app_config = tmp / "support.yaml"
        app_config.write_text(yaml.safe_dump(support_config(dataset).model_dump(mode="json")))
        serving = tmp / "serving.yaml"
        serving.write_text(yaml.safe_dump({"data_dir": str(tmp / "serving"), "apps": [str(app_config)]}))
        db = open_database(load_settings(serving))
        register(db, load_settings(serving).registry_dir, "bench-support", run, "bench")
        key = create_key(db, "bench", "predict", rate=10_000).key
        db.dispose()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDMINE_")}
        env.update(GOLDMINE_CONFIG=str(serving), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT / "src"))
        log = (tmp / "server.log").open("w")
        server = subprocess.Popen([sys.executable, "-m", "goldmine.cli", "serve", "--host", "127.0.0.1", "--port",
                                   str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_ready(url, server, tmp / "server.log", 180)
            texts = [r["text"] for r in dev][: calls + 10]
            timings = []
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                for i, message in enumerate(texts):
                    started = time.perf_counter()
                    r = client.post("/v1/apps/support/messages", json={"message": message})
                    elapsed = (time.perf_counter() - started) * 1000
                    r.raise_for_status()
                    if i >= 10:  # the first calls load the model and the index
                        timings.append(elapsed)
        finally:
            server.terminate()
            server.wait(30)
            log.close()
    timings.sort()
    return {"dataset": name, "calls": len(timings), "p50_ms": round(timings[len(timings) // 2], 2),
            "p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 2),
            "mean_ms": round(sum(timings) / len(timings), 2)}


def support_section(runs: Path = ROOT / "runs" / "bench", only: list[str] | None = None, limit: int | None = None,
                    serve: bool = True) -> dict:
    """The support section of bench/results/apps.json: the headline keys plus every dataset's figures. Datasets
    whose model is not trained under `runs` are listed in `missing` (train them with --train)."""
    datasets, missing = {}, {}
    for name in only or list(DATASETS):
        model_dir = runs / DATASETS[name].run
        if not (model_dir / "goldmine.json").is_file():
            missing[name] = f"no trained model in {model_dir}: python bench/apps_support.py --train {name}"
            continue
        datasets[name] = measure(name, model_dir, limit)
    pooled = [d["counts"] for n, d in datasets.items() if d["handoff_f1"] is not None]
    tp, fp, fn = (sum(c[k] for c in pooled) for k in ("tp", "fp", "fn"))
    measured = [d["intent_accuracy"] for d in datasets.values() if d["intent_accuracy"] is not None]
    latency = None
    if serve and datasets:
        target = "bitext" if "bitext" in datasets else next(iter(datasets))
        latency = http_latency(target, Path(datasets[target]["model_dir"]))
    return {
        "intent_accuracy": round(sum(measured) / len(measured), 4) if measured else None,
        "oos_recall": datasets.get("clinc150", {}).get("oos_recall"),
        "handoff_f1": _prf(tp, fp, fn)["handoff_f1"] if pooled else None,
        "p99_ms": latency["p99_ms"] if latency else None,
        "p50_ms": latency["p50_ms"] if latency else None,
        "answer_accuracy": {n: d["answer_accuracy"] for n, d in datasets.items()},
        "datasets": datasets, "latency": latency, "missing": missing,
    }


def markdown(section: dict, machine: dict) -> str:
    lines = ["# Support assistant (issue 15, part 1)", "",
             f"{machine['date']}, {machine['cpu']} ({machine['cores']} cores); see bench/apps_support.py for the "
             "method.", "",
             "| dataset | texts | intent acc | OOS recall | hand-off P | hand-off R | hand-off F1 | answer acc | "
             "answered |", "|---|---|---|---|---|---|---|---|---|"]
    for name, d in section["datasets"].items():
        lines.append(f"| {name} | {d['texts']} | {d['intent_accuracy']} | {d['oos_recall']} | "
                     f"{d['handoff_precision']} | {d['handoff_recall']} | {d['handoff_f1']} | {d['answer_accuracy']} "
                     f"| {d['answered']} |")
    if section["latency"]:
        latency = section["latency"]
        lines += ["", f"HTTP, one message at a time ({latency['dataset']} model, {latency['calls']} calls): "
                  f"p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms."]
    for name, why in section["missing"].items():
        lines.append(f"\nnot measured: {name}: {why}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench", help="Where the trained models are.")
    parser.add_argument("--only", action="append", choices=list(DATASETS), help="Measure only these datasets.")
    parser.add_argument("--train", action="append", choices=list(DATASETS), default=[],
                        help="Fine-tune this dataset's model first (long: see the module docstring).")
    parser.add_argument("--limit", type=int, default=None, help="At most this many held-out texts per dataset.")
    parser.add_argument("--no-serve", action="store_true", help="Skip the HTTP latency measurement.")
    parser.add_argument("--fit-out-of-scope", action="append", choices=list(DATASETS), default=[],
                        help="Fit this trained run's out-of-scope threshold (method auto) before measuring.")
    args = parser.parse_args()
    for name in args.train:
        train_model(name, args.runs)
    for name in args.fit_out_of_scope:
        report = fit_out_of_scope(name, args.runs)
        print(f"{name}: out-of-scope rule {report['rule']}", file=sys.stderr)
    section = support_section(args.runs, args.only, args.limit, serve=not args.no_serve)
    machine = machine_info()
    model_dirs = {n: d["model_dir"] for n, d in section["datasets"].items()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "apps_support.json").write_text(json.dumps({**provenance(model_dirs), "machine": machine,
                                                           "support": section}, indent=2) + "\n")
    (RESULTS / "apps_support.md").write_text(markdown(section, machine))
    print(json.dumps({k: v for k, v in section.items() if k != "datasets"}, indent=2))


if __name__ == "__main__":
    main()
