"""Little-data benchmark: goldmine few-shot against the `setfit` package on the same samples, full fine-tuning and
zero-shot beside them.

    python bench/fewshot.py                               # every section (hours on 2 cores: background it)
    python bench/fewshot.py --only sst2 --seeds 5
    python bench/fewshot.py --only banking77 --sizes 10 --methods goldmine,full,zeroshot
    python bench/fewshot.py --only sst2 --sizes 8 --seeds 1 --limit-dev 200    # a smoke run: printed, not written

Protocol. For each data set and size k, k examples per label are drawn from train with seeds 0..S-1 (the same
sample for every method of a seed); everything is measured on the full dev set (the test splits are held back).
Each configuration reports mean ± std over the seeds and its wall time (model load + training + head fit, not the
dev predictions), all in one process with the same torch threads.

Methods, all on the bundled all-MiniLM-L6-v2:
    goldmine   `tuning.strategy: fewshot` with its defaults and `tuning.fewshot.labels`: the same label names the
               zero-shot row gets, as a prior whose weight is fitted on out-of-fold scores (nothing tuned on these
               dev sets: the defaults were compared on held-out *train* texts).
    setfit     the `setfit` package (1.2) with its default arguments: pairs by oversampling every unique pair, one
               epoch, batch 16, logistic-regression head. Where that pair list is too long to train in this
               benchmark's budget (`SETFIT_MAX_PAIRS`: banking77), `num_iterations=20` (the SetFit paper's setting)
               instead, recorded as `setfit_arguments`.
    setfit_same_budget  `setfit` with as many text encodings as goldmine's contrastive and end-to-end phases made
               (goldmine encodes each text of a batch once and scores every pair inside it; setfit encodes both
               texts of every pair), i.e. num_iterations = goldmine steps x batch / (4 x examples). The sst2 cells
               in bench/results count both phases; the banking77 cells were measured before the end-to-end phase
               existed, with the contrastive steps only.
    full       goldmine full fine-tuning on the same sample (defaults: LP-FT head, EMA), max(50, 10 epochs) steps
               at batch 16, no dev set (a user with k examples has none).
    zeroshot   `tuning.strategy: zeroshot` from label names only (sst2: "negative"/"positive"; banking77: the intent
               name with spaces), no examples: the same for every seed.

clinc150: full fine-tuning with `out_of_scope.method: auto`, with and without the oos training examples (see
`clinc150`). medical_question_pairs: the cross-encoder's pair accuracy before/after, and retrieval of each
question's paraphrase before/after bi-encoder fine-tuning (see `medical_question_pairs`). active_learning: banking77
from 2 per intent, +200 texts per round, random vs `data suggest`.

Result keys: bench/results/fewshot.json {data set: {size: {method: {"mean", "std", "wall_s", "runs": [...]}}},
"clinc150": {...}, "active_learning": {"random": [...], "suggested": [...]}}; a subset run replaces only the cells
it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine_info, provenance  # noqa: E402
from runs import read_jsonl, timed_train, write_jsonl  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data"
DATASETS = {  # name: (train, dev, sizes, zero-shot label text)
    "sst2": (DATA / "sst2" / "train.jsonl", DATA / "sst2" / "dev.jsonl", (8, 16, 32),
             {"0": "negative", "1": "positive"}),
    "banking77": (DATA / "banking77" / "train.jsonl", DATA / "banking77" / "dev.jsonl", (10, 30), None),
}
METHODS = ("goldmine", "setfit", "setfit_same_budget", "full", "zeroshot")
SECTIONS = ("clinc150", "medical_question_pairs", "active_learning")
SETFIT_MAX_PAIRS = 20_000  # beyond this, setfit's default pair list is replaced by num_iterations=20
TARGETS = {("sst2", "8"): 0.80, ("banking77", "10"): 0.86}


def sample(rows: list[dict], per_label: int, seed: int) -> list[dict]:
    by_label: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_label[str(row["label"])].append(row)
    rng = random.Random(seed)
    picked = [row for label in sorted(by_label) for row in rng.sample(by_label[label], per_label)]
    rng.shuffle(picked)
    return picked


# ---------------------------------------------------------------- the methods
def goldmine_method(strategy: str, train: Path | None, dev: Path, out: Path, overrides: dict) -> tuple[float, float,
                                                                                                          dict]:
    """(dev accuracy, wall seconds of goldmine.train less its evaluation on dev, the method's record)."""
    settings = {"task": "classification", "tuning.strategy": strategy, "output_dir": str(out),
                "data.dev": str(dev), "data.test": str(dev),  # given, so that nothing is split off the sample
                "training.linear_probe": False, **overrides}
    if train is not None:
        settings["data.train"] = str(train)
    result, build_s, _ = timed_train(settings)
    record = json.loads((out / "goldmine.json").read_text())["extra"].get(strategy, {})
    metrics = result.test_metrics
    return metrics["accuracy"], build_s, {"ece": metrics["calibration"]["ece"], **record}


def setfit_method(train_rows: list[dict], dev_rows: list[dict], arguments: dict, work: Path) -> tuple[float, float]:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from goldmine.modeling.backbone import resolve_base_model

    started = time.perf_counter()
    model = SetFitModel.from_pretrained(resolve_base_model("bundled"))
    data = Dataset.from_dict({"text": [r["text"] for r in train_rows], "label": [str(r["label"]) for r in train_rows]})
    # setfit checkpoints into ./checkpoints unless told otherwise: keep them in the run's scratch folder
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(work / "setfit-checkpoints"), **arguments),
                      train_dataset=data)
    trainer.train()
    wall = time.perf_counter() - started
    predicted = model.predict([r["text"] for r in dev_rows], batch_size=64)
    truth = [str(r["label"]) for r in dev_rows]
    return sum(str(p) == t for p, t in zip(predicted, truth, strict=True)) / len(truth), wall


def setfit_default_pairs(rows: list[dict]) -> int:
    """How many pairs setfit 1.2's default (oversampling every unique pair) trains on: twice the larger of the
    positive and negative unique-pair counts."""
    counts = defaultdict(int)
    for row in rows:
        counts[str(row["label"])] += 1
    n = len(rows)
    positive = sum(c * (c - 1) // 2 for c in counts.values())
    return 2 * max(positive, n * (n - 1) // 2 - positive)


def zeroshot_labels(name: str, rows: list[dict], folder: Path) -> Path:
    import yaml

    names = sorted({str(r["label"]) for r in rows})
    texts = DATASETS[name][3] or {label: label.replace("_", " ") for label in names}
    path = folder / "labels.yaml"
    path.write_text(yaml.safe_dump({"labels": [{"name": n, "description": texts[n]} for n in names]}))
    return path


def measure(name: str, size: int, seed: int, methods: list[str], train_rows: list[dict], dev_rows: list[dict],
            dev: Path, work: Path) -> dict[str, dict]:
    sampled = sample(train_rows, size, seed)
    train = write_jsonl(sampled, work / f"{name}-{size}-{seed}.jsonl")
    runs: dict[str, dict] = {}
    goldmine_record: dict = {}
    for method in methods:
        out = work / f"{method}-{name}-{size}-{seed}"
        if method == "goldmine":
            labels = zeroshot_labels(name, train_rows, work)  # the label names a user has, as zero-shot gets them
            accuracy, wall, goldmine_record = goldmine_method("fewshot", train, dev, out, {
                "training.seed": seed, "tuning.fewshot.labels": str(labels)})
            runs[method] = {"accuracy": accuracy, "wall_s": wall, "record": goldmine_record}
        elif method == "full":
            steps = max(50, math.ceil(10 * len(sampled) / 16))
            accuracy, wall, _ = goldmine_method("full", train, dev, out, {
                "training.seed": seed, "training.max_steps": steps, "training.batch_size": 16,
                "training.eval_strategy": "none", "training.early_stopping_patience": None})
            runs[method] = {"accuracy": accuracy, "wall_s": wall, "steps": steps}
        elif method == "zeroshot":
            labels = zeroshot_labels(name, train_rows, work)
            accuracy, wall, _ = goldmine_method("zeroshot", None, dev, out, {"tuning.zeroshot.labels": str(labels)})
            runs[method] = {"accuracy": accuracy, "wall_s": wall}
        elif method == "setfit":
            pairs = setfit_default_pairs(sampled)
            arguments = {"seed": seed} if pairs <= SETFIT_MAX_PAIRS else {"seed": seed, "num_iterations": 20}
            accuracy, wall = setfit_method(sampled, dev_rows, arguments, work)
            runs[method] = {"accuracy": accuracy, "wall_s": wall, "setfit_arguments": arguments,
                            "default_pairs": pairs}
        elif method == "setfit_same_budget":
            if not goldmine_record:
                raise SystemExit("setfit_same_budget needs the goldmine method in the same run (its step count)")
            steps = goldmine_record["steps"] + goldmine_record.get("end_to_end_steps", 0)
            encodings = steps * goldmine_record["batch_size"]
            iterations = max(1, round(encodings / (4 * len(sampled))))
            arguments = {"seed": seed, "num_iterations": iterations}
            accuracy, wall = setfit_method(sampled, dev_rows, arguments, work)
            runs[method] = {"accuracy": accuracy, "wall_s": wall, "setfit_arguments": arguments}
        print(f"[{name} {size}/label seed {seed}] {method}: {runs[method]['accuracy']:.4f} in "
              f"{runs[method]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    return runs


# ---------------------------------------------------------------- clinc150: out-of-scope
def clinc150(work: Path, limit_dev: int | None) -> dict:
    """Full fine-tuning (defaults) on clinc150 with `out_of_scope.method: auto` and label `oos`, measured on the
    full dev set (its 100 oos texts): once with the 100 oos training examples (an explicit class, plus the
    threshold), once without them (the threshold alone). The threshold is fitted on the dev split goldmine cuts
    from train (10%), never on the dev set it is measured on."""
    train_rows = read_jsonl(DATA / "clinc150" / "train.jsonl")
    dev_file = DATA / "clinc150" / "dev.jsonl"
    if limit_dev:
        dev_file = write_jsonl(read_jsonl(dev_file)[:limit_dev] + [r for r in read_jsonl(dev_file)
                                                                  if r["label"] == "oos"][:20], work / "cdev.jsonl")
    variants = {}
    for variant, rows in (("with_oos_training", train_rows),
                          ("without_oos_training", [r for r in train_rows if r["label"] != "oos"])):
        train = write_jsonl(rows, work / f"clinc-{variant}.jsonl")
        out = work / f"clinc-{variant}"
        import goldmine
        from goldmine.config import load_config

        config = load_config(None, {"task": "classification", "output_dir": str(out), "data.train": str(train),
                                    "data.test": str(dev_file), "data.split": [0.9, 0.1, 0.0],
                                    "out_of_scope.method": "auto", "out_of_scope.label": "oos",
                                    "training.linear_probe": False})
        started = time.perf_counter()
        result = goldmine.train(config)
        report = json.loads((out / "out_of_scope.json").read_text())
        measured = result.test_metrics["out_of_scope"]
        wall = time.perf_counter() - started
        variants[variant] = {**{k: measured[k] for k in ("in_scope_accuracy", "oos_recall", "oos_precision",
                                                           "auroc", "in_scope_sent_away", "oos_examples")},
                             "accuracy_without_rule": result.test_metrics["accuracy"],
                             "rule": report["rule"], "chosen_by": report.get("chosen_by"),
                             "scores_on_train_dev_split": report["scores"], "wall_s": wall,
                             "every_score": every_score(out, config, dev_file)}
        print(f"[clinc150 {variant}] {variants[variant]}", file=sys.stderr, flush=True)
    best = variants["with_oos_training"]
    return {"in_scope_accuracy": best["in_scope_accuracy"], "oos_recall": best["oos_recall"],
            "auroc": best["auroc"], **variants}


def every_score(run_dir: Path, config, dev_file: Path) -> list[dict]:
    """Each out-of-scope score, fitted on the run's own dev split (cut from train) at several minimum shares of
    in-scope texts sent away, measured on the benchmark's dev file: what `auto` and the default share rest on."""
    from goldmine.data.readers import read_file
    from goldmine.data.splits import load_splits
    from goldmine.inference import out_of_scope as oos
    from goldmine.inference.model import Model

    splits = load_splits(config.data, False, out_of_scope_label="oos")
    model = Model.load(run_dir, runtime="torch", batch_size=128)
    fit_in, fit_out = splits["dev"], None
    if "oos" not in model.labels:
        fit_in, fit_out = oos.separate(fit_in, "oos")
    inside, labels_in, outside, prototypes = oos.fit_inputs(model, fit_in, fit_out, splits["train"], "oos")
    measured_in, measured_out = (read_file(dev_file), None) if "oos" in model.labels else \
        oos.separate(read_file(dev_file), "oos")
    test_in, test_labels, test_out = oos.dev_outputs(model, measured_in, measured_out, embeddings=True)
    rows = []
    for method in oos.SCORES:
        for share in (0.0, 0.01, 0.02):
            rule, report = oos.fit_rule(inside, labels_in, outside, model.labels, method, 0.95, "oos", None,
                                        prototypes, share)
            metrics = oos.out_of_scope_metrics(rule, test_in, test_labels, test_out, model.labels)
            rows.append({"method": method, "min_in_scope_sent_away": share,
                         "fit_auroc": report["scores"][method]["auroc"],
                         "fit_auroc_of": report["scores"][method]["auroc_of"], **metrics})
    return rows


# ---------------------------------------------------------------- banking77: which texts to label next
AL_STEPS = 60  # contrastive steps of each round's few-shot training (the same for both arms; see active_learning)


def active_learning(work: Path, seeds: int, rounds: int = 5, per_round: int = 200, start: int = 2,
                    limit_dev: int | None = None, progress=None, first_seed: int = 0, earlier: dict | None = None
                    ) -> dict:
    """Start from `start` examples per intent, add `per_round` texts per round from the rest of train (their
    labels revealed), chosen at random or by `goldmine data suggest` on the current model; few-shot training each
    round; dev accuracy after each round, averaged over the seeds.

    Each round trains `tuning.fewshot` with AL_STEPS contrastive steps instead of its default (up to 400): 2 arms
    x 5 seeds x 6 rounds are 60 trainings, and what is compared is the texts each arm chose, under one training
    budget. `progress(partial result)` is called after each seed, so a long run keeps what it measured. With
    `first_seed`, the curves of seeds below it are taken from `earlier` (the results file's entry)."""
    from goldmine.data.suggest import UnlabeledText, suggest
    from goldmine.inference.model import Model

    train_rows = read_jsonl(DATA / "banking77" / "train.jsonl")
    dev = DATA / "banking77" / "dev.jsonl"
    if limit_dev:
        dev = write_jsonl(read_jsonl(dev)[:limit_dev], work / "bdev.jsonl")
    curves: dict[str, list[list[float]]] = {"random": [], "suggested": []}
    if first_seed:
        kept = (earlier or {}).get("runs", {})
        if any(len(kept.get(how, [])) != first_seed for how in curves):
            raise SystemExit(f"--first-seed {first_seed}: the results file holds {len(kept.get('random', []))} "
                             "active-learning seeds; add seeds right after the last one")
        curves = {how: list(kept[how]) for how in curves}
    for seed in range(first_seed, seeds):
        first = sample(train_rows, start, seed)
        taken_texts = {r["text"] for r in first}
        for how in curves:
            labeled = list(first)
            pool = [r for r in train_rows if r["text"] not in taken_texts]
            rng = random.Random(seed)
            curve = []
            for r in range(rounds + 1):
                out = work / f"al-{how}-{seed}-{r}"
                accuracy, _, _ = goldmine_method("fewshot", write_jsonl(labeled, work / f"al-{how}.jsonl"), dev, out,
                                                 {"training.seed": seed, "tuning.fewshot.steps": AL_STEPS})
                curve.append(accuracy)
                print(f"[active learning {how} seed {seed}] round {r}: {len(labeled)} labeled, {accuracy:.4f}",
                      file=sys.stderr, flush=True)
                if r == rounds:
                    break
                if how == "random":
                    picked = set(rng.sample(range(len(pool)), per_round))
                else:
                    texts = [UnlabeledText(i, row["text"]) for i, row in enumerate(pool)]
                    picked = {s.line for s in suggest(Model.load(out, runtime="torch"), texts, per_round, seed)}
                labeled += [pool[i] for i in sorted(picked)]
                pool = [row for i, row in enumerate(pool) if i not in picked]
            curves[how].append(curve)
        if progress is not None and seed < seeds - 1:
            progress(summarise_curves(curves, rounds, start, per_round))
    return summarise_curves(curves, rounds, start, per_round)


def summarise_curves(curves: dict[str, list[list[float]]], rounds: int, start: int, per_round: int) -> dict:
    mean = {how: [statistics.fmean(c[r] for c in runs) for r in range(rounds + 1)] for how, runs in curves.items()}
    return {**mean, "runs": curves, "start_per_label": start, "per_round": per_round,
            "seeds": len(curves["random"]), "steps_per_round": AL_STEPS}


# ---------------------------------------------------------------- medical_question_pairs: pairs and retrieval
def medical_question_pairs(work: Path) -> dict:
    """Pair accuracy of the cross-encoder (goldmine full fine-tuning on the pairs, defaults) against the frozen
    bundled encoder with a logistic-regression probe; retrieval (each dev question's paraphrase among every dev
    second question: MRR@10, recall@1/5) before (the bundled encoder) and after bi-encoder fine-tuning
    (`task: retrieval`, defaults: the data's labeled near misses as hard negatives), both rows from the run's own
    before-vs-after table. Dev is split off train (10%) in both runs, so the dev file is only measured on."""
    import goldmine
    from goldmine.config import load_config

    train, dev = DATA / "medical_question_pairs" / "train.jsonl", DATA / "medical_question_pairs" / "dev.jsonl"
    started = time.perf_counter()
    pairs = goldmine.train(load_config(None, {"task": "classification", "output_dir": str(work / "mqp-pairs"),
                                              "data.train": str(train), "data.test": str(dev),
                                              "data.split": [0.9, 0.1, 0.0]}))
    pair_wall = time.perf_counter() - started
    started = time.perf_counter()
    retrieval = goldmine.train(load_config(None, {"task": "retrieval", "output_dir": str(work / "mqp-retrieval"),
                                                  "data.train": str(train), "data.test": str(dev),
                                                  "data.split": [0.9, 0.1, 0.0]}))
    retrieval_wall = time.perf_counter() - started
    record = json.loads((work / "mqp-retrieval" / "goldmine.json").read_text())["extra"]
    before, after = retrieval.before_after["pretrained encoder"], retrieval.before_after["fine-tuned"]
    print(f"[medical_question_pairs] pairs {pairs.before_after}; retrieval {retrieval.before_after}", file=sys.stderr,
          flush=True)
    return {"pair_accuracy": pairs.test_metrics["accuracy"],
            "pair_accuracy_before": pairs.before_after.get("pretrained + linear probe", {}).get("accuracy"),
            "before_after": pairs.before_after, "pair_wall_s": pair_wall,
            "mrr10_before": before["mrr10"], "mrr10_after": after["mrr10"],
            "retrieval_before": before, "retrieval_after": after, "retrieval_wall_s": retrieval_wall,
            "retrieval_steps": retrieval.global_step, "hard_negatives": record["retrieval"]["hard_negatives"],
            "queries": retrieval.test_metrics["queries"], "entries": retrieval.test_metrics["corpus"]}


def summarise(runs: list[dict]) -> dict:
    accuracies = [r["accuracy"] for r in runs]
    return {"mean": statistics.fmean(accuracies), "std": statistics.stdev(accuracies) if len(runs) > 1 else 0.0,
            "wall_s": statistics.fmean(r["wall_s"] for r in runs), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sections = [*DATASETS, *SECTIONS]
    parser.add_argument("--only", default=",".join(sections), help="comma-separated: " + ", ".join(sections))
    parser.add_argument("--sizes", help="comma-separated examples per label (default: the data set's protocol)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated: " + ", ".join(METHODS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="start at this seed: add seeds to cells an "
                        "earlier run measured (the file keeps both runs' seeds)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--limit-dev", type=int, help="the first N dev examples only (a smoke run, not written)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    if unknown := [m for m in methods if m not in METHODS]:
        parser.error(f"unknown methods {unknown}")
    results: dict = {}  # this run's cells; `write` lays them over the file as it is then
    origin = provenance()
    from goldmine.modeling.backbone import resolve_base_model

    origin["model_dirs"] = {"base_model": resolve_base_model("bundled")}
    for name in args.only.split(","):
        if name in SECTIONS:
            with tempfile.TemporaryDirectory(prefix="goldmine-fewshot-") as folder:
                if name == "clinc150":
                    entry = clinc150(Path(folder), args.limit_dev)
                elif name == "active_learning":
                    def keep(partial: dict) -> None:
                        if not args.limit_dev:
                            write({"active_learning": partial | {"git_commit": origin["git_commit"],
                                                                 "date": machine_info()["date"]}}, origin)

                    earlier = json.loads((RESULTS / "fewshot.json").read_text()).get("active_learning") \
                        if (RESULTS / "fewshot.json").is_file() else None
                    entry = active_learning(Path(folder), args.seeds, limit_dev=args.limit_dev, progress=keep,
                                            first_seed=args.first_seed, earlier=earlier)
                else:
                    entry = medical_question_pairs(Path(folder))
            results[name] = entry | {"git_commit": origin["git_commit"], "date": machine_info()["date"]}
            if not args.limit_dev:
                write(results, origin)
            continue
        train_file, dev_file, sizes, _ = DATASETS[name]
        train_rows, dev_rows = read_jsonl(train_file), read_jsonl(dev_file)
        with tempfile.TemporaryDirectory(prefix="goldmine-fewshot-") as folder:
            work = Path(folder)
            dev = dev_file
            if args.limit_dev:
                dev_rows = dev_rows[: args.limit_dev]
                dev = write_jsonl(dev_rows, work / "dev.jsonl")
            for size in [int(s) for s in args.sizes.split(",")] if args.sizes else sizes:
                per_method: dict[str, list[dict]] = defaultdict(list)
                for seed in range(args.first_seed, args.seeds):  # written after every seed: a long run keeps it
                    for method, run in measure(name, size, seed, methods, train_rows, dev_rows, dev, work).items():
                        per_method[method].append({"seed": seed, **run})
                    cell = results.setdefault(name, {}).setdefault(str(size), {})
                    for method, runs in per_method.items():
                        cell[method] = summarise(runs) | {"git_commit": origin["git_commit"],
                                                          "date": machine_info()["date"]}
                    if not args.limit_dev:
                        write(results, origin)
                line = ", ".join(f"{m} {cell[m]['mean']:.4f} ± {cell[m]['std']:.4f} ({cell[m]['wall_s']:.0f} s)"
                                 for m in per_method)
                print(f"[{name} {size}/label] {line}", file=sys.stderr, flush=True)
    if args.limit_dev:
        print(json.dumps(results, indent=2))
    else:
        print((RESULTS / "fewshot.md").read_text())


def merged(measured: dict) -> dict:
    """The results file as it is now with this run's cells laid over it: two runs of different sections or methods
    at once (each on its own core) keep each other's cells."""
    path = RESULTS / "fewshot.json"
    current = json.loads(path.read_text()) if path.is_file() else {}
    for name, entry in measured.items():
        if name in DATASETS:
            for size, cell in entry.items():
                known = current.setdefault(name, {}).setdefault(size, {})
                for method, summary in cell.items():
                    # seeds measured by an earlier run (--first-seed) are kept; a seed measured again is replaced
                    seeds = {r["seed"] for r in summary["runs"]}
                    runs = [r for r in known.get(method, {}).get("runs", []) if r["seed"] not in seeds]
                    runs = sorted(runs + summary["runs"], key=lambda r: r["seed"])
                    commits = sorted({summary["git_commit"], *known.get(method, {}).get("git_commits", []),
                                      *([known[method]["git_commit"]] if method in known else [])})
                    known[method] = summarise(runs) | {"git_commit": summary["git_commit"], "git_commits": commits,
                                                       "date": summary["date"]}
        else:
            current[name] = entry
    return current


def write(measured: dict, origin: dict) -> None:
    results = merged(measured)
    ordered = {**origin, "machine": machine_info(),
               **{k: v for k, v in results.items() if k not in origin and k != "machine"}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fewshot.json").write_text(json.dumps(ordered, indent=2) + "\n")
    (RESULTS / "fewshot.md").write_text(markdown(ordered))


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = ["# Little-data benchmark", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads; torch "
             f"{m['versions'].get('torch')}, transformers {m['versions'].get('transformers')}. Last written by "
             f"`{results['command']}` at commit {results['git_commit']}"
             f"{' (with uncommitted changes)' if results.get('git_dirty') else ''}. Every cell: mean ± std of dev "
             "accuracy over the seeds' samples, and the mean wall time of training; its own commit and date.", ""]
    for name in DATASETS:
        if name not in results:
            continue
        lines += [f"## {name}", "", "| per label | " + " | ".join(METHODS) + " |", "|---:|" + "---:|" * len(METHODS)]
        for size, cell in sorted(results[name].items(), key=lambda kv: int(kv[0])):
            values = [f"{cell[m]['mean']:.4f} ± {cell[m]['std']:.4f} ({cell[m]['wall_s']:.0f} s, "
                      f"{len(cell[m]['runs'])} seeds)" if m in cell else "-" for m in METHODS]
            target = TARGETS.get((name, size))
            lines.append(f"| {size}{f' (target ≥ {target})' if target else ''} | " + " | ".join(values) + " |")
        lines.append("")
    if "clinc150" in results:
        c = results["clinc150"]
        lines += ["## clinc150: out-of-scope (full dev, 100 oos texts; target in-scope accuracy ≥ 0.95, oos recall ≥ "
                  "0.75)", "", "| training data | in-scope accuracy | oos recall | oos precision | AUROC | rule |",
                  "|---|---:|---:|---:|---:|---|"]
        for variant in ("with_oos_training", "without_oos_training"):
            if variant in c:
                v = c[variant]
                lines.append(f"| {variant.replace('_', ' ')} | {v['in_scope_accuracy']:.4f} | {v['oos_recall']:.4f} | "
                             f"{v['oos_precision'] or 0:.4f} | {v['auroc'] or 0:.4f} | {v['rule']['method']} ≥ "
                             f"{v['rule']['threshold']:.4g}{' + oos class' if v['rule']['explicit'] else ''} |")
        lines.append("")
        for variant in ("with_oos_training", "without_oos_training"):
            rows = c.get(variant, {}).get("every_score")
            if not rows:
                continue
            lines += [f"Every score, {variant.replace('_', ' ')}: fitted on the run's dev split (cut from train), "
                      "measured on dev. `fit AUROC` is what the fit could see (wrong vs right answers when the split "
                      "has no oos texts); the default rule is `auto` with a minimum share of 0.01.", "",
                      "| score | min share sent away | fit AUROC | in-scope accuracy | oos recall | oos precision | "
                      "AUROC | in-scope sent away |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {r['method']} | {r['min_in_scope_sent_away']} | {r['fit_auroc'] or 0:.4f} "
                      f"({r['fit_auroc_of']}) | {r['in_scope_accuracy']:.4f} | {r['oos_recall']:.4f} | "
                      f"{r['oos_precision'] or 0:.4f} | {r['auroc'] or 0:.4f} | {r['in_scope_sent_away']:.4f} |"
                      for r in rows]
            lines.append("")
    if "medical_question_pairs" in results:
        q = results["medical_question_pairs"]
        b, a = q["retrieval_before"], q["retrieval_after"]
        lines += ["## medical_question_pairs (dev; target pair accuracy ≥ 0.80)", "",
                  f"- pair accuracy: {q['pair_accuracy_before']:.4f} (frozen encoder + probe) -> "
                  f"**{q['pair_accuracy']:.4f}** (cross-encoder, goldmine full fine-tuning, {q['pair_wall_s']:.0f} s)",
                  f"- retrieval (each of {q['queries']} questions' paraphrase among {q['entries']} second "
                  "questions):",
                  "", "| encoder | MRR@10 | recall@1 | recall@5 | pair accuracy (cosine ≥ threshold fitted on dev) |",
                  "|---|---:|---:|---:|---:|",
                  f"| bundled (before) | {b['mrr10']:.4f} | {b['recall1']:.4f} | {b['recall5']:.4f} | "
                  f"{b.get('pair_accuracy', float('nan')):.4f} |",
                  f"| fine-tuned, `task: retrieval` ({q['retrieval_steps']} steps, {q['retrieval_wall_s']:.0f} s) | "
                  f"{a['mrr10']:.4f} | {a['recall1']:.4f} | {a['recall5']:.4f} | "
                  f"{a.get('pair_accuracy', float('nan')):.4f} |", ""]
    if "active_learning" in results:
        a = results["active_learning"]
        lines += [f"## banking77: labeling curve ({a['start_per_label']} per intent, then +{a['per_round']} per "
                  f"round; {a['seeds']} seeds; few-shot with {a.get('steps_per_round', 'default')} contrastive steps "
                  "per round; target: suggested ≥ random + 0.02 after round 3)", "",
                  "| round | labeled | random | suggested | suggested - random |", "|---:|---:|---:|---:|---:|"]
        for r, (x, y) in enumerate(zip(a["random"], a["suggested"], strict=True)):
            labeled = 77 * a["start_per_label"] + r * a["per_round"]
            lines.append(f"| {r} | {labeled} | {x:.4f} | {y:.4f} | {y - x:+.4f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
