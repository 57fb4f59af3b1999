"""Accuracy benchmark: goldmine's defaults on real data from ../shared/data, measured on the dev splits.

    python bench/accuracy.py                 # every benchmark (long: run it in the background)
    python bench/accuracy.py --only sst2     # one of: sst2, sst2_lora, conll2003, banking77
    python bench/accuracy.py --only sst2 --seeds 42,43,44   # an ensemble of three seeds
    python bench/accuracy.py --only conll2003 --reuse       # measure the finished run in runs/bench/conll2003

No model selection on dev: each run trains for a fixed schedule (no early stopping, no best
checkpoint) and is then evaluated once on dev, through the same inference path that serves it.
Each trained model stays in runs/bench/<name>/ so it can be evaluated later with `goldmine eval`;
`--reuse` measures such a run again (with the code of now) instead of training it again.

NER (conll2003) is also measured as a client gets it: the run is loaded as the server loads it
(`Model.load`, runtime auto) and every dev sentence is sent to `predict` alone (its tokens joined
by spaces), then every dev document as one request (its sentences a line each). Returned entities
are mapped back to the tokens by their character offsets; one that does not start and end on
token boundaries counts as predicted and wrong.

Results merge into bench/results/accuracy.json and .md (a subset run updates only its entries). This
script is their only writer: every entry carries its provenance (git commit, command line, the model
directory it measured, the machine), so a figure can be traced to the code and model behind it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import goldmine  # noqa: E402
from goldmine.config import load_config  # noqa: E402
from goldmine.data.readers import read_file  # noqa: E402
from goldmine.evaluation.evaluate import headline  # noqa: E402
from goldmine.inference.model import META_FILE, Model  # noqa: E402
from goldmine.inference.runtime import WEIGHT_FILES  # noqa: E402
from goldmine.tasks.token_classification import entity_spans, precision_recall_f1  # noqa: E402
from goldmine.training.trainer import train  # noqa: E402
from machine import machine_info, provenance  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONFIGS = ROOT / "bench" / "configs"
BENCHMARKS = {
    # name: (config file, data folder, train file, dev file, metric key in results, metric in eval)
    # sst2 trains on GLUE's phrase-level training set (phrases of the training sentences' parse trees, as GLUE
    # SST-2 is trained): 0.9094 dev (random head; 0.9025 with the LP-FT head) against 0.8773 on the 6,920 sentences
    # alone (2026-11-30, seed 42).
    "sst2": ("sst2.yaml", "sst2", "phrases.jsonl", "dev.jsonl", "dev_accuracy", "accuracy"),
    "sst2_lora": ("sst2_lora.yaml", "sst2", "train.jsonl", "dev.jsonl", "dev_accuracy", "accuracy"),
    "conll2003": ("conll2003.yaml", "conll2003", "train.txt", "dev.txt", "dev_entity_f1", "f1"),
    "banking77": ("banking77.yaml", "banking77", "train.jsonl", "dev.jsonl", "dev_accuracy", "accuracy"),
}
TARGETS = {"sst2": 0.90, "conll2003": 0.92, "banking77": 0.93, "sst2_lora": None}
RUN_SETTINGS_IGNORED = ("output_dir", "training.num_threads")  # a reused run may differ only in these


def _relative(path: Path) -> str:
    """A model directory as results name it: relative to the repository when inside it, else absolute."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _finished(run_dir: Path) -> bool:
    """A run that training completed: metadata, final metrics and weights are all there."""
    return ((run_dir / META_FILE).is_file() and (run_dir / "metrics.json").is_file()
            and any((run_dir / name).is_file() for name in WEIGHT_FILES if name != "config.json"))


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _reused(config, data_file: Path) -> dict:
    """What a finished run in `config.output_dir` says about itself: the same fields a fresh training gives, read
    from its own files. Refuses a run whose settings differ from the benchmark's (but for RUN_SETTINGS_IGNORED)."""
    run_dir = config.output_dir
    recorded = load_config(run_dir / "config.yaml")
    wanted, got = _flatten(config.model_dump(mode="json")), _flatten(recorded.model_dump(mode="json"))
    # a setting the benchmark leaves unset (None: training picks it) may have been recorded as what training picked
    differ = {k: (got.get(k), v) for k, v in wanted.items()
              if k not in RUN_SETTINGS_IGNORED and v is not None and got.get(k) != v}
    if differ:
        raise SystemExit(f"--reuse: {run_dir}/config.yaml differs from the benchmark's settings "
                         f"(key: (run, benchmark)): {differ}; train it again without --reuse")
    meta = json.loads((run_dir / META_FILE).read_text())["extra"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    trained_at = dt.datetime.fromtimestamp((run_dir / META_FILE).stat().st_mtime, dt.UTC)
    return {
        "output_dir": run_dir,
        # scored again now, by the code of now: the run's own metrics.json holds what the code of then computed
        "test_metrics": goldmine.evaluate(run_dir, data_file, runtime="torch"),
        "before_after": saved.get("before_after", {}),
        "train_seconds": meta.get("train_seconds"),
        "global_step": meta.get("global_step"),
        "meta": meta,
        "config": recorded,
        "reused": {"run": _relative(run_dir), "trained_at": trained_at.isoformat(timespec="seconds"),
                   "before_after": "from the run's metrics.json, as scored when it was trained"},
    }


def _trained(config) -> dict:
    result = train(config)
    return {
        "output_dir": result.output_dir, "test_metrics": result.test_metrics, "before_after": result.before_after,
        "train_seconds": result.train_seconds, "global_step": result.global_step, "config": config,
        "meta": json.loads((result.output_dir / META_FILE).read_text())["extra"],
    }


def run(name: str, data_root: Path, runs: Path, seeds: list[int], threads: int | None = None,
        overrides: dict[str, str] | None = None, reuse: bool = False) -> dict:
    """Train one model per seed (one seed: a single model; several: their ensemble) and measure on dev.

    `overrides` (dotted config keys, e.g. from `--set training.epochs=4`) apply on top of the benchmark's config.
    With `reuse`, a seed whose run directory already holds a finished run is measured, not trained again."""
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
        reusable = reuse and _finished(config.output_dir)
        members.append(_reused(config, data / dev_file) if reusable else _trained(config))
    wall = time.perf_counter() - started
    first = members[0]
    meta = first["meta"]
    entry = {
        key: first["test_metrics"][metric],
        "before_after": first["before_after"],
        "wall_seconds": round(wall, 1) if not any("reused" in m for m in members) else None,  # of training
        "train_seconds": round(sum(m["train_seconds"] for m in members), 1),
        "train_examples_per_s": meta.get("train_examples_per_second"),
        "global_step": first["global_step"],
        "date": machine_info()["date"],
        "trainable_share": round(meta["trainable_parameters"] / meta["total_parameters"], 5),
        "config": first["config"].model_dump(mode="json", exclude={"data"}),
        "model_dir": _relative(first["output_dir"]),
        "train_file": train_file,
    }
    if any("reused" in m for m in members):
        entry["reused"] = [m["reused"] for m in members if "reused" in m]
    scored = first["test_metrics"]
    if len(seeds) > 1:
        ensemble_dir = goldmine.ensemble([m["output_dir"] for m in members], runs / name / "ensemble")
        scored = goldmine.evaluate(ensemble_dir, data / dev_file, ensemble_dir / "eval")
        entry["members"] = {str(seed): m["test_metrics"][metric] for seed, m in zip(seeds, members, strict=True)}
        entry[key] = scored[metric]
        table = dict(first["before_after"])
        single = table.pop("fine-tuned")
        table[f"fine-tuned, seed {seeds[0]} alone"] = single
        table[f"fine-tuned, ensemble of {len(seeds)} seeds"] = {m: scored[m] for m in single}
        entry["before_after"] = table
        entry["model_dir"] = _relative(ensemble_dir)
    if len(seeds) == 1 and "reused" in first:  # the headline row as scored now, like the entry's figure
        entry["before_after"] = {**entry["before_after"], "fine-tuned": headline(scored)}
    if name == "conll2003":
        entry[f"{key}_strict"] = scored["f1_strict"]
        entry["evaluation"] = {k: scored[k] for k in ("f1", "precision", "recall", "f1_strict", "precision_strict",
                                                      "recall_strict", "entities", "truncated")}
        entry |= served_ner(ROOT / entry["model_dir"], data / dev_file, threads)
    if name == "sst2_lora":
        full = _load().get("sst2", {})
        full_single = full.get("members", {}).get("42", full.get("dev_accuracy"))
        if full.get("train_file", "train.jsonl") != train_file:  # a gap means something on the same data only
            full_single = None
        entry["gap_to_full_points"] = round(100 * (full_single - entry[key]), 2) if full_single is not None else None
    return entry


# ------------------------------------------------------------------------------------- NER as a client gets it


def served_ner(model_dir: Path, dev_file: Path, threads: int | None) -> dict:
    """Dev entity F1 through `predict`, the path the server runs: each sentence sent alone, then each document
    sent as one request. Scored with the decoder and the counting rule evaluation uses (`entity_spans`)."""
    model = Model.load(model_dir, threads=threads)  # runtime auto: what the server would load
    examples = read_file(dev_file).examples
    truth = [set(entity_spans(ex.tags)) for ex in examples]
    lines = [" ".join(ex.tokens) for ex in examples]
    token_spans = []  # per sentence: each token's [start, end) in its line
    for ex in examples:
        spans, offset = [], 0
        for token in ex.tokens:
            spans.append((offset, offset + len(token)))
            offset += len(token) + 1
        token_spans.append(spans)

    started = time.perf_counter()
    alone = [p["entities"] for p in model.predict(lines)]
    sentence = _score(truth, token_spans, alone, time.perf_counter() - started, len(lines))

    documents: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        documents.setdefault(ex.document, []).append(i)
    texts = ["\n".join(lines[i] for i in members) for members in documents.values()]
    started = time.perf_counter()
    predictions = model.predict(texts)
    seconds = time.perf_counter() - started
    per_sentence: list[list[dict]] = [[] for _ in examples]
    for members, prediction in zip(documents.values(), predictions, strict=True):
        starts, offset = [], 0  # where each sentence's line starts in the document
        for i in members:
            starts.append(offset)
            offset += len(lines[i]) + 1
        for entity in prediction["entities"]:
            k = max(j for j, start in enumerate(starts) if start <= entity["start"])
            base = starts[k]
            per_sentence[members[k]].append({**entity, "start": entity["start"] - base, "end": entity["end"] - base})
    document = _score(truth, token_spans, per_sentence, seconds, len(texts))
    return {
        "served_sentence_f1": sentence["f1"],
        "served_document_f1": document["f1"],
        "served": {"runtime": model.runtime, "sentence": sentence, "document": document},
    }


def _score(truth: list[set], token_spans: list[list[tuple[int, int]]], predicted: list[list[dict]],
           seconds: float, requests: int) -> dict:
    """Entity P/R/F1 of returned entities (offsets into each sentence's line) against the true token spans."""
    correct = found = unaligned = 0
    for gold, spans, entities in zip(truth, token_spans, predicted, strict=True):
        first = {start: k for k, (start, _) in enumerate(spans)}
        last = {end: k for k, (_, end) in enumerate(spans)}
        for entity in entities:
            found += 1
            if entity["start"] not in first or entity["end"] not in last:
                unaligned += 1  # starts or ends inside a token: cannot be right
                continue
            correct += (entity["type"], first[entity["start"]], last[entity["end"]] + 1) in gold
    true = sum(len(gold) for gold in truth)
    precision, recall, f1 = precision_recall_f1(correct, found, true)
    return {"f1": f1, "precision": precision, "recall": recall,
            "entities": {"correct": correct, "predicted": found, "true": true, "not_on_token_boundaries": unaligned},
            "requests": requests, "seconds": round(seconds, 1)}


# ------------------------------------------------------------------------------------------------------ results


def _load() -> dict:
    path = RESULTS / "accuracy.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "accuracy.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results.get("machine", {})
    dirty = " (with uncommitted changes)" if results.get("git_dirty") else ""
    lines = [
        "# Accuracy benchmark",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB; "
        f"torch {m.get('versions', {}).get('torch')}, transformers {m.get('versions', {}).get('transformers')}.",
        f"Last written by `{results.get('command')}` at commit {results.get('git_commit')}{dirty}.",
        "Measured on each data set's dev split after a fixed schedule (no early stopping or checkpoint selection).",
        "",
        "| benchmark | metric | value | target | train s | train ex/s | trainable share | measured | commit |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for name in BENCHMARKS:
        if name not in results:
            continue
        r = results[name]
        key = BENCHMARKS[name][4]
        target = TARGETS[name]
        commit = (r["git_commit"] or "?")[:10] + ("+dirty" if r.get("git_dirty") else "") if "git_commit" in r \
            else "untraced"
        lines.append(f"| {name} | {key} | {r[key]:.4f} | {target if target else '-'} | {r['train_seconds']} | "
                     f"{r.get('train_examples_per_s')} | {r['trainable_share']:.4f} | {r.get('date', '-')[:10]} | "
                     f"{commit} |")
    untraced = [name for name in BENCHMARKS if name in results and "git_commit" not in results[name]]
    if untraced:
        lines += ["", f"Untraced: {', '.join(untraced)} were measured before results carried their commit and "
                      "command; run them again to trace them."]
    reused = [(name, r) for name in BENCHMARKS if (r := results.get(name, {})).get("reused")]
    for name, r in reused:
        trained = ", ".join(f"{x['run']} trained {x['trained_at']}" for x in r["reused"])
        lines += ["", f"{name}: measured on a finished run ({trained}), not trained again (`--reuse`); its "
                      "before-vs-after rows other than the headline are the ones scored when it was trained."]
    ner = results.get("conll2003", {})
    if "served_sentence_f1" in ner:
        served, evaluation = ner["served"], ner["evaluation"]
        lines += [
            "", "## conll2003: what a client gets (dev entity F1)", "",
            "Evaluation tags each sentence with its document's neighbouring sentences as context and scores entities "
            "by conlleval's rules (seqeval's default mode; strict mode drops entities that open with a stray I-). "
            f"The served rows send the dev set to `predict` as the server runs it (runtime {served['runtime']}); an "
            "entity is right when its character offsets fall on the true entity's first and last token.", "",
            "| measured how | F1 | precision | recall | entities right / returned | seconds |",
            "|---|---:|---:|---:|---:|---:|",
            f"| evaluation, sentences with document context (conlleval) | {evaluation['f1']:.4f} | "
            f"{evaluation['precision']:.4f} | {evaluation['recall']:.4f} | "
            f"{evaluation['entities']['correct']} / {evaluation['entities']['predicted']} | - |",
            f"| evaluation, the same tags by seqeval strict mode | {evaluation['f1_strict']:.4f} | "
            f"{evaluation['precision_strict']:.4f} | {evaluation['recall_strict']:.4f} | - | - |",
        ]
        for label, row in (("served, each sentence sent alone", served["sentence"]),
                           ("served, each document sent as one request", served["document"])):
            lines.append(f"| {label} ({row['requests']} requests) | {row['f1']:.4f} | {row['precision']:.4f} | "
                         f"{row['recall']:.4f} | {row['entities']['correct']} / {row['entities']['predicted']} | "
                         f"{row['seconds']} |")
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
        lines += ["", "Notes (given with `--note` when the entry was measured):", *notes]
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
    parser.add_argument("--reuse", action="store_true",
                        help="measure a finished run already in --runs/<name> instead of training it again")
    parser.add_argument("--note", default=None, help="how the run was made (e.g. what else ran beside it)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override on top of the benchmark's config (repeatable), for experiments")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where accuracy.json/.md are written")
    args = parser.parse_args()
    names = args.only.split(",")
    if unknown := [n for n in names if n not in BENCHMARKS]:
        parser.error(f"unknown {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    overrides = dict(item.split("=", 1) for item in args.set)
    RESULTS = args.results
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # training sets its own; a reused run is only measured
    for name in names:
        entry = run(name, args.data, args.runs, [int(x) for x in args.seeds.split(",")], args.threads, overrides,
                    args.reuse)
        if args.note:
            entry["note"] = args.note
        if overrides:
            entry["overrides"] = overrides
        entry |= provenance({name: entry["model_dir"]}) | {"machine": machine_info()}
        results = _load()  # re-read: another benchmark may have finished meanwhile
        results[name] = entry
        model_dirs = {n: results[n].get("model_dir") for n in BENCHMARKS if n in results}
        results |= provenance(model_dirs) | {"machine": machine_info()}
        write({**{k: v for k, v in results.items() if k not in BENCHMARKS},
               **{n: results[n] for n in BENCHMARKS if n in results}})
        print(f"{name}: {json.dumps({k: v for k, v in entry.items() if k not in ('config', 'before_after')})}")


if __name__ == "__main__":
    main()
