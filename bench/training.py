"""Training-speed benchmark: the textbook fine-tune vs goldmine's defaults, time to the same dev metric.

    python bench/training.py                      # sst2 and conll2003 (~45 min on 2 cores: run it in the background)
    python bench/training.py --only sst2

The textbook recipe, as tutorials write it: every sequence padded to 128 tokens, batch 16, AdamW lr 2e-5 with
linear decay, a plain DataLoader loop, `AutoModelFor{Sequence,Token}Classification` on the same MiniLM (CLS
pooler for sentences, labels on first sub-tokens for NER), one epoch; then its dev metric M.
goldmine: `goldmine.train` with the task's default config (nothing tuned for this benchmark), evaluating on dev
every `eval_steps`, stopped at the first evaluation that reaches M. Time to metric is wall time from the start of
the run (goldmine: reading, validating and tokenising the data included) to the end of the training step that
reached M; the time spent evaluating is taken out for both recipes. Each recipe runs in its own process, so peak
resident memory (VmHWM) is its own. Results go to bench/results/training.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine_info  # noqa: E402

from goldmine.memory import peak_rss_mb  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data"
DATASETS = {  # name: (task, train file, dev file, metric, goldmine eval_steps)
    "sst2": ("classification", DATA / "sst2" / "train.jsonl", DATA / "sst2" / "dev.jsonl", "accuracy", 20),
    "conll2003": ("ner", DATA / "conll2003" / "train.txt", DATA / "conll2003" / "dev.txt", "f1", 40),
}
TEXTBOOK = {"max_length": 128, "batch_size": 16, "learning_rate": 2e-5, "epochs": 1, "seed": 42}
TARGET_SPEEDUP = 3.0


def limited(path: Path, limit: int | None) -> Path:
    """The first `limit` examples of `path` in a temporary file (for a quick smoke run), or `path` itself."""
    if not limit:
        return path
    text = path.read_text()
    if path.suffix == ".jsonl":
        kept = "\n".join(text.splitlines()[:limit]) + "\n"
    else:  # CoNLL: sentences are separated by blank lines
        kept = "\n\n".join(text.split("\n\n")[:limit]) + "\n"
    target = Path(tempfile.mkdtemp(prefix="goldmine-bench-")) / path.name
    target.write_text(kept)
    return target


# ---------------------------------------------------------------- the textbook recipe
def textbook(name: str, limit: int | None = None) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    from goldmine.data.readers import read_file
    from goldmine.modeling.backbone import resolve_base_model

    task, train_file, dev_file, metric, _ = DATASETS[name]
    train, dev = read_file(limited(train_file, limit)), read_file(dev_file)  # read before the clock starts
    labels = train.label_names()
    label_id = {label: i for i, label in enumerate(labels)}
    random.seed(TEXTBOOK["seed"])
    np.random.seed(TEXTBOOK["seed"])
    torch.manual_seed(TEXTBOOK["seed"])
    started = time.perf_counter()
    base = resolve_base_model("bundled")
    tokenizer = AutoTokenizer.from_pretrained(base)

    def encode(data) -> TensorDataset:
        pad = {"padding": "max_length", "truncation": True, "max_length": TEXTBOOK["max_length"]}
        if task == "ner":
            enc = tokenizer([list(ex.tokens) for ex in data.examples], is_split_into_words=True, **pad)
            aligned = []
            for i, ex in enumerate(data.examples):
                previous, row = None, []
                for word in enc.word_ids(i):
                    row.append(-100 if word is None or word == previous else label_id[ex.tags[word]])
                    previous = word
                aligned.append(row)
            y = torch.tensor(aligned)
        else:
            enc = tokenizer([ex.text for ex in data.examples], **pad)
            y = torch.tensor([label_id[ex.labels[0]] for ex in data.examples])
        return TensorDataset(torch.tensor(enc["input_ids"]), torch.tensor(enc["attention_mask"]), y)

    train_set = encode(train)
    auto = AutoModelForTokenClassification if task == "ner" else AutoModelForSequenceClassification
    model = auto.from_pretrained(base, num_labels=len(labels))
    loader = DataLoader(train_set, batch_size=TEXTBOOK["batch_size"], shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=TEXTBOOK["learning_rate"])
    schedule = get_linear_schedule_with_warmup(optimizer, 0, len(loader) * TEXTBOOK["epochs"])
    model.train()
    steps = 0
    for _ in range(TEXTBOOK["epochs"]):
        for input_ids, attention_mask, y in loader:
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=y).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            steps += 1
    train_seconds = time.perf_counter() - started

    model.eval()
    dev_set = encode(dev)
    predictions = []
    with torch.inference_mode():
        for input_ids, attention_mask, y in DataLoader(dev_set, batch_size=64):
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            predictions.append((logits.argmax(-1), y))
    if task == "ner":
        from seqeval.metrics import f1_score
        from seqeval.scheme import IOB2

        true_tags, pred_tags = [], []
        for pred, y in predictions:
            for p_row, y_row in zip(pred, y, strict=True):
                keep = y_row != -100
                true_tags.append([labels[i] for i in y_row[keep]])
                pred_tags.append([labels[i] for i in p_row[keep]])
        value = float(f1_score(true_tags, pred_tags, mode="strict", scheme=IOB2))
    else:
        value = float(sum((p == y).sum() for p, y in predictions) / len(dev_set))
    return {"recipe": TEXTBOOK, "metric": metric, "dev_metric": value, "train_seconds": train_seconds,
            "steps": steps, "examples_per_s": len(train_set) * TEXTBOOK["epochs"] / train_seconds,
            "peak_rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------- goldmine's defaults, until they reach the target
def goldmine_run(name: str, target: float, threads: int | None, limit: int | None = None) -> dict:
    from transformers import TrainerCallback

    import goldmine
    from goldmine.config import TrainConfig

    task, train_file, dev_file, metric, eval_steps = DATASETS[name]

    class TimeToMetric(TrainerCallback):
        """Records (training seconds, step, dev metric) at each evaluation and stops once the target is met."""

        def __init__(self):
            self.evals: list[dict] = []
            self.eval_seconds = 0.0
            self.reached: dict | None = None

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            now = time.perf_counter()
            self.eval_seconds += metrics.get("eval_runtime", 0.0)
            point = {"step": state.global_step, "epoch": round(state.epoch or 0, 3),
                     "train_seconds": now - started - self.eval_seconds, "dev_metric": metrics[f"eval_{metric}"]}
            self.evals.append(point)
            if self.reached is None and point["dev_metric"] >= target:
                self.reached = point
                control.should_training_stop = True

    timer = TimeToMetric()
    with tempfile.TemporaryDirectory(prefix="goldmine-bench-") as out:
        config = TrainConfig.model_validate({
            "task": task, "output_dir": out,
            "data": {"train": str(limited(train_file, limit)), "dev": str(dev_file),
                     "test": str(dev_file)},  # a test file of its own, so that train is not split
            "training": {"eval_strategy": "steps", "eval_steps": eval_steps, "save_steps": eval_steps * 10_000,
                         "early_stopping_patience": None, "linear_probe": False, "num_threads": threads},
        })
        started = time.perf_counter()
        goldmine.train(config, callbacks=[timer])
        defaults = config.model_dump(mode="json", exclude={"data", "output_dir"})
    reached = timer.reached
    steps = reached["step"] if reached else timer.evals[-1]["step"]
    seconds = reached["train_seconds"] if reached else timer.evals[-1]["train_seconds"]
    return {"config": defaults, "target": target, "reached": reached, "evaluations": timer.evals,
            "examples_per_s": steps * config.training.batch_size / seconds, "peak_rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------- the run
def child(args: argparse.Namespace) -> None:
    if args.recipe == "textbook":
        print(json.dumps(textbook(args.dataset, args.limit)))
    else:
        print(json.dumps(goldmine_run(args.dataset, args.target, args.threads, args.limit)))


def spawn(*options: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *options], capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"{' '.join(options)} failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(DATASETS), help="comma-separated: " + ", ".join(DATASETS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--limit", type=int, help="train on the first N examples only (a smoke run, not written)")
    parser.add_argument("--recipe", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recipe:
        return child(args)

    path = RESULTS / "training.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    threads = ["--threads", str(args.threads)] if args.threads else []
    threads += ["--limit", str(args.limit)] if args.limit else []
    for name in args.only.split(","):
        print(f"[{name}] textbook recipe ...", file=sys.stderr, flush=True)
        base = spawn("--recipe", "textbook", "--dataset", name, *threads)
        print(f"[{name}] textbook: {base['dev_metric']:.4f} in {base['train_seconds']:.0f} s; goldmine ...",
              file=sys.stderr, flush=True)
        ours = spawn("--recipe", "goldmine", "--dataset", name, "--target", str(base["dev_metric"]), *threads)
        reached = ours["reached"]
        entry = {
            "metric": base["metric"],
            "textbook": base,
            "goldmine": ours,
            "speedup_to_same_metric": round(base["train_seconds"] / reached["train_seconds"], 2) if reached else None,
            "examples_per_s_ratio": round(ours["examples_per_s"] / base["examples_per_s"], 2),
            "date": machine_info()["date"],  # data sets may be run apart (--only): each says when
        }
        if args.limit:
            print(json.dumps(entry, indent=2))
            continue
        results[name] = entry
        results["machine"] = machine_info() | {"threads": args.threads or os.cpu_count()}
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        write_markdown(results)
        print(f"[{name}] speedup to the same metric: {entry['speedup_to_same_metric']}x", file=sys.stderr, flush=True)
    if not args.limit:
        print((RESULTS / "training.md").read_text())


def write_markdown(results: dict) -> None:
    m = results["machine"]
    lines = [
        "# Training-speed benchmark", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads; date {m['date']}; "
        f"torch {m['versions'].get('torch')}, transformers {m['versions'].get('transformers')}.",
        f"Textbook: pad to {TEXTBOOK['max_length']}, batch {TEXTBOOK['batch_size']}, AdamW lr "
        f"{TEXTBOOK['learning_rate']}, linear decay, plain DataLoader loop, {TEXTBOOK['epochs']} epoch. "
        "goldmine: the task's default config, stopped at the first dev evaluation reaching the textbook's metric; "
        "evaluation time excluded for both.", "",
        "| data | metric | textbook metric | textbook s | goldmine s to it | goldmine step | speedup "
        "| examples/s textbook | examples/s goldmine | peak RSS MB textbook | peak RSS MB goldmine | measured |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in DATASETS:
        if name not in results:
            continue
        r = results[name]
        t, g = r["textbook"], r["goldmine"]
        reached = g["reached"] or {}
        lines.append(
            f"| {name} | {r['metric']} | {t['dev_metric']:.4f} | {t['train_seconds']:.0f} | "
            f"{reached.get('train_seconds', float('nan')):.0f} | {reached.get('step', '-')} | "
            f"**{r['speedup_to_same_metric']}x** | {t['examples_per_s']:.1f} | {g['examples_per_s']:.1f} | "
            f"{t['peak_rss_mb']:.0f} | {g['peak_rss_mb']:.0f} | {r.get('date', '-')} |")
    lines += ["", f"Target: ≥ {TARGET_SPEEDUP}x faster to the same metric."]
    (RESULTS / "training.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
