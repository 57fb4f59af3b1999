"""Accuracy benchmark: goldmine's defaults on real data from ../shared/data, measured on the dev splits.

    python bench/accuracy.py                 # every benchmark (long: run it in the background)
    python bench/accuracy.py --only sst2     # one of: sst2, sst2_lora, conll2003, banking77
    python bench/accuracy.py --only sst2 --seeds 42,43,44   # an ensemble of three seeds

No model selection on dev: each run trains for a fixed schedule (no early stopping, no best
checkpoint) and is then evaluated once on dev, through the same inference path that serves it.
Each trained model stays in runs/bench/<name>/ so it can be evaluated later with `goldmine eval`.
Results merge into bench/results/accuracy.json and .md (a subset run updates only its entries).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine_info  # noqa: E402

import goldmine  # noqa: E402
from goldmine.config import load_config  # noqa: E402
from goldmine.training.trainer import train  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONFIGS = ROOT / "bench" / "configs"
BENCHMARKS = {
    # name: (config file, data folder, train file, dev file, metric key in results, metric in eval)
    "sst2": ("sst2.yaml", "sst2", "train.jsonl", "dev.jsonl", "dev_accuracy", "accuracy"),
    "sst2_lora": ("sst2_lora.yaml", "sst2", "train.jsonl", "dev.jsonl", "dev_accuracy", "accuracy"),
    "conll2003": ("conll2003.yaml", "conll2003", "train.txt", "dev.txt", "dev_entity_f1", "f1"),
    "banking77": ("banking77.yaml", "banking77", "train.jsonl", "dev.jsonl", "dev_accuracy", "accuracy"),
}


def run(name: str, data_root: Path, runs: Path, seeds: list[int], threads: int | None = None,
        overrides: dict[str, str] | None = None) -> dict:
    """Train one model per seed (one seed: a single model; several: their ensemble) and measure on dev.

    `overrides` (dotted config keys, e.g. from `--set training.epochs=4`) apply on top of the benchmark's config."""
    config_file, folder, train_file, dev_file, key, metric = BENCHMARKS[name]
    data = data_root / folder
    members, started = [], time.perf_counter()
    for i, seed in enumerate(seeds):
        config = load_config(CONFIGS / config_file, {
            "data.train": str(data / train_file),
            "data.dev": str(data / dev_file),
            "data.test": str(data / dev_file),  # measured on dev: the test split is held back
            "output_dir": str(runs / name if len(seeds) == 1 else runs / name / f"seed-{seed}"),
            "training.eval_strategy": "none",
            "training.seed": seed,
            "training.linear_probe": i == 0,  # the before-vs-after baselines do not depend on the seed
            "training.num_threads": threads,
            **(overrides or {}),
        })
        members.append((config, train(config)))
    wall = time.perf_counter() - started
    config, result = members[0]
    meta = json.loads((result.output_dir / "goldmine.json").read_text())["extra"]
    entry = {
        key: result.test_metrics[metric],
        "before_after": result.before_after,
        "wall_seconds": round(wall, 1),
        "train_seconds": round(sum(r.train_seconds for _, r in members), 1),
        "train_examples_per_s": meta.get("train_examples_per_second"),
        "global_step": result.global_step,
        "date": machine_info()["date"],
        "trainable_share": round(meta["trainable_parameters"] / meta["total_parameters"], 5),
        "config": config.model_dump(mode="json", exclude={"data"}),
        "model_dir": str(result.output_dir.relative_to(ROOT)) if result.output_dir.is_relative_to(ROOT) else None,
    }
    if len(seeds) > 1:
        ensemble_dir = goldmine.ensemble([r.output_dir for _, r in members], runs / name / "ensemble")
        scored = goldmine.evaluate(ensemble_dir, data / dev_file, ensemble_dir / "eval")
        entry["members"] = {str(seed): r.test_metrics[metric] for seed, (_, r) in zip(seeds, members, strict=True)}
        entry[key] = scored[metric]
        table = dict(result.before_after)
        single = table.pop("fine-tuned")
        table[f"fine-tuned, seed {seeds[0]} alone"] = single
        table[f"fine-tuned, ensemble of {len(seeds)} seeds"] = {m: scored[m] for m in single}
        entry["before_after"] = table
        entry["model_dir"] = str(ensemble_dir.relative_to(ROOT)) if ensemble_dir.is_relative_to(ROOT) else None
    if name == "sst2_lora":
        full = _load().get("sst2", {})
        full_single = full.get("members", {}).get("42", full.get("dev_accuracy"))
        entry["gap_to_full_points"] = round(100 * (full_single - entry[key]), 2) if full_single is not None else None
    return entry


def _load() -> dict:
    path = RESULTS / "accuracy.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "accuracy.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results.get("machine", {})
    lines = [
        "# Accuracy benchmark",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB; date {m.get('date')}; "
        f"torch {m.get('versions', {}).get('torch')}, transformers {m.get('versions', {}).get('transformers')}.",
        "Measured on each data set's dev split after a fixed schedule (no early stopping or checkpoint selection).",
        "",
        "| benchmark | metric | value | target | train s | train ex/s | trainable share | measured |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    targets = {"sst2": 0.90, "conll2003": 0.92, "banking77": 0.93, "sst2_lora": None}
    for name in BENCHMARKS:
        if name not in results:
            continue
        r = results[name]
        key = BENCHMARKS[name][4]
        target = targets[name]
        lines.append(f"| {name} | {key} | {r[key]:.4f} | {target if target else '-'} | {r['train_seconds']} | "
                     f"{r.get('train_examples_per_s')} | {r['trainable_share']:.4f} | {r.get('date', '-')[:10]} |")
    for name in BENCHMARKS:
        if name in results and results[name].get("before_after"):
            lines += ["", f"## {name}: before vs after (dev)", "", "| model | " + " | ".join(
                next(iter(results[name]["before_after"].values()))) + " |"]
            table = results[name]["before_after"]
            cols = list(next(iter(table.values())))
            lines.append("|---|" + "---:|" * len(cols))
            lines += [f"| {row} | " + " | ".join(f"{v[c]:.4f}" for c in cols) + " |" for row, v in table.items()]
    notes = [f"- {name}: {results[name]['note']}" for name in BENCHMARKS if results.get(name, {}).get("note")]
    if notes:
        lines += ["", "Notes:", *notes]
    if "sst2_lora" in results and results["sst2_lora"].get("gap_to_full_points") is not None:
        lines += ["", f"LoRA vs full on sst2: gap {results['sst2_lora']['gap_to_full_points']} points, "
                      f"trainable share {results['sst2_lora']['trainable_share']:.4f}."]
    (RESULTS / "accuracy.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="shared data root")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench", help="where models are kept")
    parser.add_argument("--seeds", default="42", help="comma-separated seeds; several train an ensemble")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--note", default=None, help="how the run was made (e.g. what else ran beside it)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override on top of the benchmark's config (repeatable), for experiments")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where accuracy.json/.md are written")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    RESULTS = args.results
    for name in args.only.split(","):
        entry = run(name, args.data, args.runs, [int(x) for x in args.seeds.split(",")], args.threads, overrides)
        results = _load()  # re-read: another benchmark may have finished meanwhile
        if args.note:
            entry["note"] = args.note
        if overrides:
            entry["overrides"] = overrides
        results[name] = entry
        results["machine"] = machine_info()
        write(results)
        print(f"{name}: {json.dumps({k: v for k, v in entry.items() if k not in ('config', 'before_after')})}")


if __name__ == "__main__":
    main()
