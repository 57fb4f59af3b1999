"""Pooling benchmark: how should a sentence-transformers checkpoint be pooled for classification?

all-MiniLM-L6-v2 was trained with mean pooling; BERT's own classifier reads the pooler
(dense + tanh over [CLS]), which that training never touched. We measure both ways:

1. linear probe (frozen encoder + logistic regression on train, scored on dev) with mean, cls and pooler;
2. one epoch of full fine-tuning on sst2 with mean vs cls vs pooler heads (same seed and schedule).

    python bench/pooling.py        # writes bench/results/pooling.json and .md

The result records the git commit, the command line, the base model the probes read and the fine-tuned runs it
left in runs/bench/pooling/.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from goldmine.config import load_config  # noqa: E402
from goldmine.data.readers import read_file  # noqa: E402
from goldmine.evaluation.baselines import linear_probe  # noqa: E402
from goldmine.modeling.backbone import load_tokenizer, resolve_base_model  # noqa: E402
from goldmine.tasks import TASKS  # noqa: E402
from goldmine.training.trainer import train  # noqa: E402
from machine import machine_info, provenance  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
POOLINGS = ("mean", "cls", "pooler")


def probes() -> dict:
    base = resolve_base_model("bundled")
    tokenizer = load_tokenizer(base)
    out = {}
    for name in ("sst2", "banking77"):
        train_data, dev = read_file(DATA / name / "train.jsonl"), read_file(DATA / name / "dev.jsonl")
        task = TASKS.get("classification")(train_data.label_names(), tokenizer, 128)
        out[name] = {p: round(linear_probe(task, base, p, train_data, dev)["accuracy"], 4) for p in POOLINGS}
    return out


def fine_tunes(runs: Path) -> dict:
    out = {}
    for pooling in POOLINGS:
        config = load_config(ROOT / "bench" / "configs" / "sst2.yaml", {
            "data.train": str(DATA / "sst2" / "train.jsonl"), "data.dev": str(DATA / "sst2" / "dev.jsonl"),
            "data.test": str(DATA / "sst2" / "dev.jsonl"), "output_dir": str(runs / f"sst2-{pooling}"),
            "model.pooling": pooling, "training.epochs": 1, "training.eval_strategy": "none",
            "training.linear_probe": False,
        })
        started = time.perf_counter()
        result = train(config)
        out[pooling] = {"dev_accuracy": round(result.test_metrics["accuracy"], 4),
                        "seconds": round(time.perf_counter() - started, 1)}
    return out


def main() -> None:
    runs = ROOT / "runs" / "bench" / "pooling"
    origin = provenance({"base_model": resolve_base_model("bundled"),
                         **{f"sst2-{p}": str((runs / f"sst2-{p}").relative_to(ROOT)) for p in POOLINGS}})
    results = {**origin, "machine": machine_info(), "linear_probe_dev_accuracy": probes(),
               "sst2_one_epoch_fine_tune": fine_tunes(runs)}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pooling.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Pooling benchmark", "",
             f"Machine: {results['machine']['cpu']}, date {results['machine']['date']}; written by "
             f"`{results['command']}` at commit {results['git_commit']}"
             f"{' (with uncommitted changes)' if results['git_dirty'] else ''}.",
             "", "## Linear probe (frozen all-MiniLM-L6-v2), dev accuracy", "",
             "| data | " + " | ".join(POOLINGS) + " |", "|---|" + "---:|" * len(POOLINGS)]
    for name, row in results["linear_probe_dev_accuracy"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[p]:.4f}" for p in POOLINGS) + " |")
    lines += ["", "## sst2, one epoch of full fine-tuning (lr 5e-5, batch 32, seed 42), dev accuracy", "",
              "| pooling | dev accuracy | seconds |", "|---|---:|---:|"]
    for pooling, row in results["sst2_one_epoch_fine_tune"].items():
        lines.append(f"| {pooling} | {row['dev_accuracy']:.4f} | {row['seconds']} |")
    (out / "pooling.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
