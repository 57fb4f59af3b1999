"""Augmentation benchmark: does `data.augment` help when labeled data is scarce?

    python bench/augmentation.py                 # banking77, 8 train texts per intent (~8 min on 2 cores)
    python bench/augmentation.py --per-class 16

Few-shot banking77: the first `--per-class` train texts of each intent (seeded shuffle), the banking77 bench
config otherwise, measured once on the full dev split. Three runs, so that the extra optimizer steps an augmented
run takes are not mistaken for the effect of its edits:

1. plain: the few-shot file, `epochs` epochs;
2. plain, longer: the same file for (1 + factor) x the epochs: as many optimizer steps as the augmented run;
3. augmented: `data.augment.factor` edited copies per text (typo, swap, delete), `epochs` epochs.

Results go to bench/results/augmentation.json and .md, with the git commit, the command line and the base model the
runs started from (the runs themselves live in a temporary directory and are not kept).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from goldmine.config import load_config  # noqa: E402
from goldmine.data.readers import read_file  # noqa: E402
from goldmine.data.writers import write_data  # noqa: E402
from goldmine.modeling.backbone import resolve_base_model  # noqa: E402
from goldmine.training.trainer import train  # noqa: E402
from machine import machine_info, provenance  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "banking77"
RESULTS = ROOT / "bench" / "results"


def few_shot(per_class: int, seed: int, target: Path) -> Path:
    """The first `per_class` texts of each label after a seeded shuffle, written as JSONL."""
    data = read_file(DATA / "train.jsonl")
    examples = list(data.examples)
    random.Random(seed).shuffle(examples)
    by_label: dict[str, list] = defaultdict(list)
    for ex in examples:
        if len(by_label[ex.labels[0]]) < per_class:
            by_label[ex.labels[0]].append(ex)
    data.examples = [ex for label in sorted(by_label) for ex in by_label[label]]
    return write_data(data, target)


def run(name: str, train_file: Path, out: Path, epochs: int, factor: float, seed: int) -> dict:
    config = load_config(ROOT / "bench" / "configs" / "banking77.yaml", {
        "data.train": str(train_file), "data.dev": str(DATA / "dev.jsonl"), "data.test": str(DATA / "dev.jsonl"),
        "data.augment.factor": factor, "output_dir": str(out / name), "training.epochs": epochs,
        "training.seed": seed, "training.eval_strategy": "none", "training.linear_probe": False,
    })
    started = time.perf_counter()
    result = train(config)
    return {"dev_accuracy": round(result.test_metrics["accuracy"], 4),
            "dev_macro_f1": round(result.test_metrics["macro_f1"], 4), "global_step": result.global_step,
            "epochs": epochs, "augment_factor": factor, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=8, help="train texts kept per intent")
    parser.add_argument("--factor", type=float, default=2.0, help="augmented copies per train text")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    base = load_config(ROOT / "bench" / "configs" / "banking77.yaml").model.name
    origin = provenance({"base_model": resolve_base_model(base)})  # the code as it was when the runs started

    with tempfile.TemporaryDirectory(prefix="goldmine-augment-") as tmp:
        train_file = few_shot(args.per_class, args.seed, Path(tmp) / "train.jsonl")
        examples = len(read_file(train_file))
        longer = round(args.epochs * (1 + args.factor))
        runs = {
            "plain": run("plain", train_file, Path(tmp), args.epochs, 0.0, args.seed),
            "plain_longer": run("plain_longer", train_file, Path(tmp), longer, 0.0, args.seed),
            "augmented": run("augmented", train_file, Path(tmp), args.epochs, args.factor, args.seed),
        }
    results = {**origin, "machine": machine_info(), "data": f"banking77, {args.per_class} train texts per intent "
               f"({examples} texts), full dev split", "per_class": args.per_class, "runs": runs,
               "gain_over_plain_points": round(100 * (runs["augmented"]["dev_accuracy"]
                                                      - runs["plain"]["dev_accuracy"]), 2),
               "gain_over_same_steps_points": round(100 * (runs["augmented"]["dev_accuracy"]
                                                           - runs["plain_longer"]["dev_accuracy"]), 2)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "augmentation.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = ["# Augmentation benchmark", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; date {m['date']}. Data: {results['data']}; "
             f"banking77 bench config, seed {args.seed}, no model selection. Written by `{results['command']}` at "
             f"commit {results['git_commit']}{' (with uncommitted changes)' if results['git_dirty'] else ''}.", "",
             "| run | augment factor | epochs | optimizer steps | dev accuracy | dev macro-F1 | seconds |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {r['augment_factor']} | {r['epochs']} | {r['global_step']} | {r['dev_accuracy']:.4f} | "
              f"{r['dev_macro_f1']:.4f} | {r['seconds']} |" for name, r in runs.items()]
    lines += ["", f"Augmented vs plain: {results['gain_over_plain_points']:+} points; vs plain with as many "
                  f"optimizer steps: {results['gain_over_same_steps_points']:+} points."]
    (RESULTS / "augmentation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
