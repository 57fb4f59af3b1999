"""Training-speed benchmark: goldmine's defaults against what a competent user runs, time to the peer's dev metric.

    python bench/training.py                        # sst2 and conll2003, 2 interleaved repeats (hours: background it)
    python bench/training.py --only sst2 --repeats 3
    nice -n 5 python bench/training.py --limit 300  # a smoke run on small slices: printed, never written

Peers, each on the same bundled MiniLM with the same torch threads:
    trainer_guide  the transformers docs' text- and token-classification guides as written: `Trainer`, tokenised with
                   truncation and no padding, `DataCollatorWithPadding` / `DataCollatorForTokenClassification`
                   (dynamic padding), labels on the first sub-token of each word (-100 elsewhere), learning rate
                   2e-5, batch 16, 2 epochs, weight decay 0.01, evaluated each epoch, the Trainer's defaults for
                   the rest (fused AdamW, linear decay, no warmup). Its final model is the one
                   `load_best_model_at_end` keeps: the epoch with the lowest dev loss (the Trainer's default
                   `metric_for_best_model`); its checkpoints and `push_to_hub` are left out, which only spares it time.
    textbook       the seed recipe: every sequence padded to 128 tokens, batch 16, AdamW lr 2e-5 with linear decay, a
                   plain DataLoader loop, one epoch, scored once at the end.
goldmine: `goldmine.train` with the task's default config (nothing tuned for this benchmark), its full schedule,
evaluated on dev every `eval_steps` and at the final step.

Time to metric. The target is the peer's final dev metric, and for every goldmine run the median final metric of
that peer's runs. A goldmine run's time is its training seconds at the first evaluation from which its dev metric
stays at or above the target until the end of its schedule (a spike that falls back does not count); if its last
evaluation is below the target, the target is not reached. A peer's time is its whole training. Both clocks start
before the process reads its data (start-up included: data reading, tokenisation, model load, goldmine's
validation and probe fit) and stop at the end of a training step; time spent evaluating is taken out on both sides.
    speedup_vs_trainer_guide = median trainer_guide seconds / median goldmine seconds to the guide's median metric
    speedup_to_same_metric   = the same against the textbook recipe
Each run is its own process (so peak resident memory is its own), the sides interleaved round by round (guide,
goldmine, textbook, guide, goldmine, ...) so that whatever else runs on the machine falls on all of them; round r
uses seed 42 + r on every side. Entity F1 (conll2003) is seqeval's default (conlleval-equivalent) mode on word tags
for both peers; goldmine's is its own dev metric. Results go to bench/results/training.json and .md (a subset run
replaces only its data sets); every entry records its git commit, command line and base model directory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from goldmine.memory import peak_rss_mb  # noqa: E402
from machine import machine_info, provenance  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data"
# goldmine's eval_steps set how finely its time to the target is read (later evaluations only delay it): every
# 20 of sst2's ~650 steps; every 100 of conll2003's ~1,300, whose dev evaluations (3,250 sentences in document
# context, every 40 steps before) took about half of the wall time of a goldmine run, so that the whole
# conll2003 comparison fits in one working session.
DATASETS = {  # name: (task, train file, dev file, metric, goldmine eval_steps)
    "sst2": ("classification", DATA / "sst2" / "train.jsonl", DATA / "sst2" / "dev.jsonl", "accuracy", 20),
    "conll2003": ("ner", DATA / "conll2003" / "train.txt", DATA / "conll2003" / "dev.txt", "f1", 100),
}
PEERS = ("trainer_guide", "textbook")
GUIDE = {"learning_rate": 2e-5, "per_device_train_batch_size": 16, "per_device_eval_batch_size": 16,
         "num_train_epochs": 2, "weight_decay": 0.01, "eval_strategy": "epoch"}
TEXTBOOK = {"max_length": 128, "batch_size": 16, "learning_rate": 2e-5, "epochs": 1}
TARGET_SPEEDUP = {"trainer_guide": 2.0, "textbook": 3.0}
SPEEDUP_KEY = {"trainer_guide": "speedup_vs_trainer_guide", "textbook": "speedup_to_same_metric"}
FIRST_SEED = 42


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


def entity_f1(true_tags: list[list[str]], pred_tags: list[list[str]]) -> float:
    """seqeval's default mode: conlleval's rules (a stray I- opens an entity), what the guides' `evaluate` reports."""
    from seqeval.metrics import f1_score

    return float(f1_score(true_tags, pred_tags))


# ---------------------------------------------------------------- time to metric (pure: tested)
def time_to_metric(evaluations: list[dict], target: float) -> dict | None:
    """The first evaluation from which `dev_metric` stays >= `target` to the end of the schedule, or None if the last
    evaluation is below it. `evaluations` are in training order, each with `dev_metric` and `train_seconds`."""
    reached = None
    for point in reversed(evaluations):  # walk back from the end while the metric holds
        if point["dev_metric"] < target:
            break
        reached = point
    return reached


def speedup(peer_seconds: list[float], goldmine_seconds: list[float | None]) -> float | None:
    """median peer seconds / median goldmine seconds to the peer's metric; None when the median goldmine run did not
    reach it (a run that never reached the target counts as slower than every run that did)."""
    if not peer_seconds or not goldmine_seconds:
        return None
    middle = statistics.median(math.inf if s is None else s for s in goldmine_seconds)
    return None if math.isinf(middle) else round(statistics.median(peer_seconds) / middle, 2)


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Targets, each goldmine run's time to them, and the speedups, from the runs of one data set."""
    summary: dict = {}
    for peer in PEERS:
        if not runs.get(peer):
            continue
        target = statistics.median(r["dev_metric"] for r in runs[peer])
        reached = [time_to_metric(g["evaluations"], target) for g in runs["goldmine"]]
        for g, point in zip(runs["goldmine"], reached, strict=True):
            g.setdefault("to_target", {})[peer] = {"target": target, "reached": point}
        summary[peer] = {"target": target, "median_seconds": statistics.median(r["train_seconds"] for r in runs[peer]),
                         "goldmine_seconds": [p["train_seconds"] if p else None for p in reached]}
        summary[SPEEDUP_KEY[peer]] = speedup([r["train_seconds"] for r in runs[peer]],
                                             summary[peer]["goldmine_seconds"])
    return summary


# ---------------------------------------------------------------- a clock that leaves evaluation out
def make_clock(metric: str):
    """A Trainer callback recording training seconds at each step end and (step, seconds, dev metric) at each
    evaluation; the time from the step end before an evaluation to the evaluation's end is taken out of the clock."""
    import torch
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.started = time.perf_counter()
            self.excluded = 0.0  # seconds spent evaluating so far
            self.step_end = self.started
            self.train_seconds = 0.0  # at the last step end
            self.final_step = 0
            self.threads: int | None = None
            self.evaluations: list[dict] = []

        def start(self) -> None:
            self.started = self.step_end = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.threads = torch.get_num_threads()

        def on_step_end(self, args, state, control, **kwargs):
            self.step_end = time.perf_counter()
            self.train_seconds = self.step_end - self.started - self.excluded
            self.final_step = state.global_step

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            spent = time.perf_counter() - self.step_end
            self.excluded += spent
            self.evaluations.append({
                "step": state.global_step, "epoch": round(state.epoch or 0, 3),
                "train_seconds": round(self.train_seconds, 2), "dev_metric": metrics[f"eval_{metric}"],
                "eval_loss": metrics.get("eval_loss"), "eval_seconds": round(spent, 2)})

    return Clock()


# ---------------------------------------------------------------- peer 1: the transformers guides
def trainer_guide(name: str, seed: int, threads: int | None, limit: int | None = None) -> dict:
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from goldmine.data.readers import read_file
    from goldmine.modeling.backbone import resolve_base_model

    task, train_file, dev_file, metric, _ = DATASETS[name]
    train_file, dev_file = limited(train_file, limit), limited(dev_file, limit)
    clock = make_clock(metric)
    clock.start()
    train, dev = read_file(train_file), read_file(dev_file)
    labels = train.label_names()
    label2id = {label: i for i, label in enumerate(labels)}
    base = resolve_base_model("bundled")
    tokenizer = AutoTokenizer.from_pretrained(base)

    if task == "ner":
        def columns(data) -> dict:
            return {"tokens": [list(ex.tokens) for ex in data.examples],
                    "ner_tags": [[label2id[t] for t in ex.tags] for ex in data.examples]}

        def preprocess(batch: dict) -> dict:  # the guide's tokenize_and_align_labels: first sub-token of each word
            encoded = tokenizer(batch["tokens"], truncation=True, is_split_into_words=True)
            aligned = []
            for i, tags in enumerate(batch["ner_tags"]):
                previous, row = None, []
                for word in encoded.word_ids(batch_index=i):
                    row.append(-100 if word is None or word == previous else tags[word])
                    previous = word
                aligned.append(row)
            encoded["labels"] = aligned
            return encoded

        def compute_metrics(prediction) -> dict:  # word tags; a word cut off by truncation counts as "O"
            predicted = np.asarray(prediction.predictions).argmax(-1)
            true_tags, pred_tags = [], []
            for ex, p_row, y_row in zip(dev.examples, predicted, prediction.label_ids, strict=True):
                tags = [labels[i] for i in p_row[y_row != -100]]
                true_tags.append(list(ex.tags))
                pred_tags.append(tags + ["O"] * (len(ex.tags) - len(tags)))
            return {"f1": entity_f1(true_tags, pred_tags)}

        auto, collator = AutoModelForTokenClassification, DataCollatorForTokenClassification(tokenizer=tokenizer)
    else:
        def columns(data) -> dict:
            return {"text": [ex.text for ex in data.examples],
                    "label": [label2id[ex.labels[0]] for ex in data.examples]}

        def preprocess(batch: dict) -> dict:
            return tokenizer(batch["text"], truncation=True)

        def compute_metrics(prediction) -> dict:
            predicted = np.asarray(prediction.predictions).argmax(-1)
            return {"accuracy": float((predicted == prediction.label_ids).mean())}

        auto, collator = AutoModelForSequenceClassification, DataCollatorWithPadding(tokenizer=tokenizer)

    train_set = Dataset.from_dict(columns(train)).map(preprocess, batched=True)
    dev_set = Dataset.from_dict(columns(dev)).map(preprocess, batched=True)
    model = auto.from_pretrained(base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    with tempfile.TemporaryDirectory(prefix="goldmine-bench-guide-") as out:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(output_dir=out, **GUIDE, save_strategy="no", seed=seed, report_to="none",
                                   disable_tqdm=True),
            train_dataset=train_set, eval_dataset=dev_set, processing_class=tokenizer, data_collator=collator,
            compute_metrics=compute_metrics, callbacks=[clock],
        )
        if threads:  # after the Trainer, as goldmine does (accelerate may set its own count)
            torch.set_num_threads(threads)
        trainer.train()
    kept = min(clock.evaluations, key=lambda e: e["eval_loss"])  # load_best_model_at_end's choice
    return {"recipe": GUIDE, "seed": seed, "metric": metric, "dev_metric": kept["dev_metric"],
            "kept_epoch": kept["epoch"], "evaluations": clock.evaluations, "train_seconds": clock.train_seconds,
            "steps": clock.final_step, "torch_threads": clock.threads,
            "examples_per_s": len(train_set) * GUIDE["num_train_epochs"] / clock.train_seconds,
            "peak_rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------- peer 2: the seed recipe (pad to 128)
def textbook(name: str, seed: int, threads: int | None, limit: int | None = None) -> dict:
    import random

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
    train_file, dev_file = limited(train_file, limit), limited(dev_file, limit)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    train = read_file(train_file)
    labels = train.label_names()
    label_id = {label: i for i, label in enumerate(labels)}
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
    dev = read_file(dev_file)
    dev_set = encode(dev)
    predictions = []
    with torch.inference_mode():
        for input_ids, attention_mask, y in DataLoader(dev_set, batch_size=64):
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            predictions.append((logits.argmax(-1), y))
    if task == "ner":  # word tags: labels sit on first sub-tokens; a word cut off at 128 tokens counts as "O"
        rows = [(p_row, y_row) for pred, y in predictions for p_row, y_row in zip(pred, y, strict=True)]
        true_tags, pred_tags = [], []
        for ex, (p_row, y_row) in zip(dev.examples, rows, strict=True):
            tags = [labels[i] for i in p_row[y_row != -100]]
            true_tags.append(list(ex.tags))
            pred_tags.append(tags + ["O"] * (len(ex.tags) - len(tags)))
        value = entity_f1(true_tags, pred_tags)
    else:
        value = float(sum((p == y).sum() for p, y in predictions) / len(dev_set))
    return {"recipe": TEXTBOOK, "seed": seed, "metric": metric, "dev_metric": value, "train_seconds": train_seconds,
            "steps": steps, "torch_threads": torch.get_num_threads(),
            "examples_per_s": len(train_set) * TEXTBOOK["epochs"] / train_seconds, "peak_rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------- goldmine's defaults, the full schedule
def goldmine_run(name: str, seed: int, threads: int | None, limit: int | None = None) -> dict:
    import goldmine
    from goldmine.config import TrainConfig

    task, train_file, dev_file, metric, eval_steps = DATASETS[name]
    train_file, dev_file = limited(train_file, limit), limited(dev_file, limit)
    clock = make_clock(metric)
    with tempfile.TemporaryDirectory(prefix="goldmine-bench-") as out:
        config = TrainConfig.model_validate({
            "task": task, "output_dir": out,
            "data": {"train": str(train_file), "dev": str(dev_file),
                     "test": str(dev_file)},  # a test file of its own, so that train is not split
            "training": {"eval_strategy": "steps", "eval_steps": eval_steps, "save_steps": eval_steps * 10_000,
                         "early_stopping_patience": None, "linear_probe": False, "num_threads": threads,
                         "seed": seed},
        })
        clock.start()
        goldmine.train(config, callbacks=[clock])
        defaults = config.model_dump(mode="json", exclude={"data", "output_dir"})
    evaluations = clock.evaluations
    if not evaluations or evaluations[-1]["step"] != clock.final_step:  # the rule needs the end of the schedule
        raise SystemExit(f"{name}: goldmine's last evaluation is not at its final step {clock.final_step}")
    return {"config": defaults, "metric": metric, "seed": seed, "evaluations": evaluations,
            "dev_metric": evaluations[-1]["dev_metric"], "train_seconds": clock.train_seconds,
            "steps": clock.final_step, "torch_threads": clock.threads,
            "examples_per_s": clock.final_step * config.training.batch_size / clock.train_seconds,
            "peak_rss_mb": peak_rss_mb()}


RECIPES = {"trainer_guide": trainer_guide, "goldmine": goldmine_run, "textbook": textbook}


# ---------------------------------------------------------------- the run
def spawn(recipe: str, name: str, seed: int, options: list[str]) -> dict:
    command = [sys.executable, __file__, "--recipe", recipe, "--dataset", name, "--seed", str(seed), *options]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"{recipe} on {name} (seed {seed}) failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_dataset(name: str, peers: list[str], repeats: int, textbook_repeats: int, options: list[str]) -> dict:
    """Every run of one data set, interleaved round by round, and their summary."""
    runs: dict[str, list[dict]] = {recipe: [] for recipe in (*peers, "goldmine")}
    with_textbook = textbook_repeats if "textbook" in peers else 0
    for r in range(max(repeats, with_textbook)):
        seed = FIRST_SEED + r
        order = [p for p in ("trainer_guide", "goldmine") if r < repeats and (p == "goldmine" or p in peers)]
        order += ["textbook"] if r < with_textbook else []
        for recipe in order:
            print(f"[{name}] round {r + 1}: {recipe} (seed {seed}) ...", file=sys.stderr, flush=True)
            result = spawn(recipe, name, seed, options)
            runs[recipe].append(result)
            print(f"[{name}] {recipe}: dev {result['dev_metric']:.4f}, {result['train_seconds']:.0f} s of training, "
                  f"{result['examples_per_s']:.1f} ex/s", file=sys.stderr, flush=True)
    summary = summarise(runs)
    return {"metric": DATASETS[name][3], **summary, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(DATASETS), help="comma-separated: " + ", ".join(DATASETS))
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated: " + ", ".join(PEERS))
    parser.add_argument("--repeats", type=int, default=2, help="runs of trainer_guide and goldmine per data set")
    parser.add_argument("--textbook-repeats", type=int, default=1,
                        help="runs of the (slow, padded) textbook recipe per data set")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--limit", type=int, help="the first N train and dev examples only (a smoke run, not written)")
    parser.add_argument("--recipe", choices=RECIPES, help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=FIRST_SEED, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recipe:  # a child: one run, its result as the last line of stdout
        print(json.dumps(RECIPES[args.recipe](args.dataset, args.seed, args.threads, args.limit)))
        return

    from goldmine.modeling.backbone import resolve_base_model

    names, peers = args.only.split(","), args.peers.split(",")
    for value, known in ((names, DATASETS), (peers, PEERS)):
        if unknown := [v for v in value if v not in known]:
            parser.error(f"unknown {', '.join(unknown)}: choose from {', '.join(known)}")
    if args.repeats < 2 and not args.limit:
        parser.error("--repeats: a written result needs at least 2 runs of each side (one run measures the machine's "
                     "mood as much as the recipe); use --limit for a smoke run")
    options = ["--threads", str(args.threads)] if args.threads else []
    options += ["--limit", str(args.limit)] if args.limit else []
    origin = provenance({"base_model": resolve_base_model("bundled")})
    path = RESULTS / "training.json"
    results = json.loads(path.read_text()) if path.is_file() and not args.limit else {}
    # entries written before results carried their provenance cannot be traced: they are not kept
    results = {k: v for k, v in results.items() if k in DATASETS and "git_commit" in v}
    for name in names:
        entry = run_dataset(name, peers, args.repeats, args.textbook_repeats, options)
        entry |= origin | {"date": machine_info()["date"], "threads": args.threads or os.cpu_count()}
        for peer in peers:
            print(f"[{name}] {SPEEDUP_KEY[peer]}: {entry.get(SPEEDUP_KEY[peer])}", file=sys.stderr, flush=True)
        if args.limit:
            print(json.dumps(entry, indent=2))
            continue
        results[name] = entry
        ordered = {**origin, "machine": machine_info() | {"threads": args.threads or os.cpu_count()},
                   **{k: results[k] for k in DATASETS if k in results}}
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ordered, indent=2) + "\n")
        (RESULTS / "training.md").write_text(markdown(ordered))
    if not args.limit:
        print((RESULTS / "training.md").read_text())


def markdown(results: dict) -> str:
    m = results["machine"]
    dirty = " (with uncommitted changes)" if results.get("git_dirty") else ""
    lines = [
        "# Training-speed benchmark", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads; torch {m['versions'].get('torch')}, "
        f"transformers {m['versions'].get('transformers')}. Written by `{results['command']}` at commit "
        f"{results['git_commit']}{dirty}; base model {results['model_dirs'].get('base_model')}.", "",
        f"trainer_guide: the transformers text/token-classification guides (`Trainer`, dynamic padding, lr "
        f"{GUIDE['learning_rate']}, batch {GUIDE['per_device_train_batch_size']}, {GUIDE['num_train_epochs']} epochs, "
        f"weight decay {GUIDE['weight_decay']}; final model = lowest dev loss, as `load_best_model_at_end`). "
        f"textbook: pad to {TEXTBOOK['max_length']}, batch {TEXTBOOK['batch_size']}, AdamW lr "
        f"{TEXTBOOK['learning_rate']}, {TEXTBOOK['epochs']} epoch. goldmine: the task's default config, its full "
        "schedule, dev evaluated every eval_steps and at the last step.",
        "Time to metric: target = the median final dev metric of the peer's runs; goldmine's time = training seconds "
        "at the first evaluation from which its dev metric stays ≥ target to the end of the schedule. Speedup = "
        "median peer seconds / median goldmine seconds to the target. Start-up included, evaluation excluded, on all "
        "sides; round r uses seed 42 + r.", "",
    ]
    for name in DATASETS:
        if name not in results:
            continue
        r = results[name]
        lines += [f"## {name} ({r['metric']}; measured {r['date']}, commit {r['git_commit'][:12]}"
                  f"{' dirty' if r.get('git_dirty') else ''})", ""]
        for peer in PEERS:
            if peer in r:
                times = ", ".join("not reached" if t is None else f"{t:.0f} s" for t in r[peer]["goldmine_seconds"])
                lines.append(f"- vs {peer}: **{r[SPEEDUP_KEY[peer]]}x** (`{SPEEDUP_KEY[peer]}`, target ≥ "
                             f"{TARGET_SPEEDUP[peer]}x): {peer} trains {r[peer]['median_seconds']:.0f} s (median) to "
                             f"a final dev {r[peer]['target']:.4f} (median); goldmine holds that from: {times}")
        lines += ["", "| recipe | seed | final dev | training s | steps | examples/s | threads | peak RSS MB "
                      "| per evaluation (step: dev) |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for recipe in (*PEERS, "goldmine"):
            for run in r["runs"].get(recipe, []):
                evals = ", ".join(f"{e['step']}: {e['dev_metric']:.4f}" for e in run.get("evaluations", []))
                lines.append(f"| {recipe} | {run['seed']} | "
                             f"{run['dev_metric']:.4f} | {run['train_seconds']:.0f} | {run['steps']} | "
                             f"{run['examples_per_s']:.1f} | {run['torch_threads']} | {run['peak_rss_mb']:.0f} | "
                             f"{evals} |")
        goldmine_runs = r["runs"].get("goldmine", [])
        if goldmine_runs:
            lines += ["", "| goldmine seed | peer | target | reached at step | seconds | dev there |",
                      "|---:|---|---:|---:|---:|---:|"]
            for run in goldmine_runs:
                for peer, hit in run.get("to_target", {}).items():
                    point = hit["reached"]
                    lines.append(f"| {run['seed']} | {peer} | {hit['target']:.4f} | "
                                 + (f"{point['step']} | {point['train_seconds']:.0f} | {point['dev_metric']:.4f} |"
                                    if point else "not reached | - | - |"))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
