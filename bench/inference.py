"""Inference benchmark: the same fine-tuned models and texts through five paths, in one run.

    python bench/inference.py                      # sst2 + banking77 dev (1,875 texts), 2 threads
    python bench/inference.py --models sst2 --limit 200   # a quick look

Paths, each in a fresh subprocess (so thread pools and memory do not leak from one to the next):
    pipeline_single   transformers `pipeline("text-classification")` called one text at a time (the textbook way)
    pipeline_batch32  the same pipeline over the list with batch_size=32
    torch             goldmine's runtime on torch (length-sorted batches of 64, fast tokenizer, inference mode)
    onnx_fp32         goldmine's runtime on the exported ONNX graph
    onnx_int8         goldmine's runtime on the int8 graph (dynamic quantisation, per-channel weights)

For each path: examples/s over all texts (tokenisation included), p50 single-text latency, the task metric,
peak resident memory, and the share of the machine's matrix-multiply ceiling it reaches: the model's FLOPs per
example are counted from the real (unpadded) token counts, and the ceiling is measured here, in the same run,
as fp32 (torch GEMM) and int8 (onnxruntime MatMulInteger) throughput on the model's own matrix shapes. Padding
and everything outside the matrix multiplies therefore count against a path. int8 paths are held to the int8
ceiling, the others to the fp32 one.

The models are the runs `python bench/accuracy.py` leaves: runs/bench/sst2 (one seed; the seed-42 member
runs/bench/sst2/seed-42 of a seed ensemble otherwise) and runs/bench/banking77. runs/ is not in git: without them
the benchmark stops and says which command trains them. Missing exports are made with `goldmine export --quantize
int8 --force` (the int8 parity figures are reported here, the gate's verdict too). Results go to
bench/results/inference.json and .md, with the git commit, the command line and the model directories measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
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
MODELS = {  # name: (run directories bench/accuracy.py leaves, the first one that holds a model wins; dev file)
    "sst2": ((ROOT / "runs" / "bench" / "sst2", ROOT / "runs" / "bench" / "sst2" / "seed-42"),
             DATA / "sst2" / "dev.jsonl"),
    "banking77": ((ROOT / "runs" / "bench" / "banking77",), DATA / "banking77" / "dev.jsonl"),
}
PATHS = ("pipeline_single", "pipeline_batch32", "torch", "onnx_fp32", "onnx_int8")
RUNTIME_OF = {"torch": "torch", "onnx_fp32": "onnx", "onnx_int8": "onnx-int8"}
LATENCY_TEXTS = 200  # single-text calls timed for p50 latency
TARGETS = {"int8_vs_pipeline_single": 4.0, "int8_vs_pipeline_batch32": 2.0, "metric_loss_points": 0.5,
           "ceiling_share": 0.70}


def model_dir(name: str) -> Path:
    """The trained run measured for `name`: a directory with a goldmine.json. runs/ is not in git (the models come
    from bench/accuracy.py), so on a fresh checkout there is none: stop before measuring anything, saying how to
    make it, rather than fail in the middle of the first path."""
    candidates, _ = MODELS[name]
    for directory in candidates:
        if (directory / "goldmine.json").is_file():
            return directory
    tried = " or ".join(str(c.relative_to(ROOT)) for c in candidates)
    raise SystemExit(f"bench/inference.py: no trained {name} model in {tried} (runs/ is not in git); train it "
                     f"first with `.venv/bin/python bench/accuracy.py --only {name}`")


# ---------------------------------------------------------------- one path, in its own process
def read_dev(path: Path, limit: int | None) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = rows[:limit] if limit else rows
    return [r["text"] for r in rows], [str(r["label"]) for r in rows]


def run_path(path: str, model_dir: Path, dev: Path, threads: int, limit: int | None) -> dict:
    """Time one path on one model: all texts for throughput, then single texts for latency."""
    import torch

    torch.set_num_threads(threads)
    texts, gold = read_dev(dev, limit)
    if path.startswith("pipeline"):
        from transformers import pipeline

        pipe = pipeline("text-classification", model=str(model_dir), trust_remote_code=True, device="cpu")
        batch = 32 if path == "pipeline_batch32" else 1

        def predict_all(items: list[str]) -> list[str]:
            if batch == 1:
                return [pipe(t)[0]["label"] for t in items]
            return [r["label"] for r in pipe(items, batch_size=batch)]

        def predict_one(text: str) -> str:
            return pipe(text)[0]["label"]
    else:
        from goldmine.inference.model import Model

        model = Model.load(model_dir, runtime=RUNTIME_OF[path], threads=threads)

        def predict_all(items: list[str]) -> list[str]:
            return [r["label"] for r in model.predict(items)]

        def predict_one(text: str) -> str:
            return model.predict([text])[0]["label"]

    predict_all(texts[:64])  # warm-up: allocation, kernel selection, caches
    started = time.perf_counter()
    predicted = predict_all(texts)
    seconds = time.perf_counter() - started
    latencies = []
    for text in texts[:LATENCY_TEXTS]:
        t0 = time.perf_counter()
        predict_one(text)
        latencies.append(time.perf_counter() - t0)
    return {
        "examples": len(texts),
        "seconds": seconds,
        "correct": sum(p == g for p, g in zip(predicted, gold, strict=True)),
        "p50_ms": 1000 * statistics.median(latencies),
        "peak_rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------- the machine's ceiling and the model's FLOPs
def flops_per_example(config, tokens: int) -> float:
    """Multiply-adds x 2 of one encoder forward pass over `tokens` real tokens (embeddings and softmax excluded)."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    dense = 2 * tokens * (4 * h * h + 2 * h * i)  # Q, K, V, output projections + the two FFN matrices
    attention = 2 * 2 * tokens * tokens * h  # scores and the weighted sum of values
    return layers * (dense + attention)


def measure_ceiling(config, threads: int, rows: int = 2048) -> dict:
    """fp32 and int8 matrix-multiply throughput on the model's own shapes (rows x hidden x intermediate)."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    torch.set_num_threads(threads)
    h, i = config.hidden_size, config.intermediate_size
    shapes = [(rows, h, i), (rows, i, h), (rows, h, h)]

    def best_of(fn, flops: float, repeat: int = 20) -> float:
        fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flops / min(times)

    fp32, int8 = [], []
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    for m, k, n in shapes:
        flops = 2.0 * m * k * n
        a, b = torch.randn(m, k), torch.randn(k, n)
        fp32.append(best_of(lambda a=a, b=b: torch.mm(a, b), flops))
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "B", "a_zero"], ["Y"])], "int8_gemm",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
            [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
            [helper.make_tensor("B", TensorProto.INT8, [k, n], np.random.randint(-127, 127, (k, n)).flatten()),
             helper.make_tensor("a_zero", TensorProto.UINT8, [], [128])],
        )
        session = ort.InferenceSession(
            helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString(), options,
            providers=["CPUExecutionProvider"])
        feed = {"A": np.random.randint(0, 255, (m, k)).astype(np.uint8)}
        int8.append(best_of(lambda s=session, f=feed: s.run(None, f), flops))
    return {
        "fp32_gflops": round(statistics.mean(fp32) / 1e9, 1),
        "int8_gops": round(statistics.mean(int8) / 1e9, 1),
        "shapes": [list(s) for s in shapes],
        "how": "best of 20 runs per shape, mean over the model's three GEMM shapes; fp32: torch.mm, "
               "int8: onnxruntime MatMulInteger (u8 x s8 -> s32), same threads as the paths",
    }


def token_counts(model_dir: Path, dev: Path, limit: int | None) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    texts, _ = read_dev(dev, limit)
    return [len(ids) for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]


# ---------------------------------------------------------------- the run
def ensure_export(model_dir: Path, threads: int) -> dict:
    """Export (fp32 + int8) unless a current export is there; returns the parity report."""
    from goldmine.inference.runtime import resolve_runtime

    parity = model_dir / "onnx" / "parity.json"
    if resolve_runtime(model_dir, "auto") != "onnx-int8" or not parity.is_file():
        import goldmine

        goldmine.export(model_dir, quantize="int8", force=True, threads=threads)
    return json.loads(parity.read_text())


def child(args: argparse.Namespace) -> None:
    print(json.dumps(run_path(args.path, model_dir(args.model), MODELS[args.model][1], args.threads, args.limit)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="at most this many texts per model")
    parser.add_argument("--child-path", dest="path", help=argparse.SUPPRESS)
    parser.add_argument("--child-model", dest="model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.path:
        return child(args)

    from transformers import AutoConfig

    models = args.models.split(",")
    paths = args.paths.split(",")
    directories = {name: model_dir(name) for name in models}  # every model present before any is measured
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    per_model: dict[str, dict] = {}
    for name in models:
        directory, dev = directories[name], MODELS[name][1]
        parity = ensure_export(directory, args.threads)
        config = AutoConfig.from_pretrained(str(directory), trust_remote_code=True)
        tokens = token_counts(directory, dev, args.limit)
        per_model[name] = {"model_dir": str(directory.relative_to(ROOT)), "data": str(dev), "examples": len(tokens),
                           "mean_tokens": round(statistics.mean(tokens), 2),
                           "flops": sum(flops_per_example(config, n) for n in tokens),
                           "int8_parity": {k: parity["runtimes"]["onnx-int8"].get(k) for k in (
                               "metric", "metric_loss_points", "label_agreement", "max_abs_logit_diff", "passed")},
                           "int8_kernels": parity["runtimes"]["onnx-int8"].get("kernels"), "paths": {}}
        for path in paths:
            print(f"[{name}] {path} ...", file=sys.stderr, flush=True)
            command = [sys.executable, __file__, "--child-path", path, "--child-model", name,
                       "--threads", str(args.threads), *(["--limit", str(args.limit)] if args.limit else [])]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            per_model[name]["paths"][path] = json.loads(out.stdout.strip().splitlines()[-1])
            r = per_model[name]["paths"][path]
            print(f"[{name}] {path}: {r['examples'] / r['seconds']:.1f} ex/s, p50 {r['p50_ms']:.1f} ms, "
                  f"accuracy {r['correct'] / r['examples']:.4f}", file=sys.stderr, flush=True)
    config = AutoConfig.from_pretrained(str(directories[models[0]]), trust_remote_code=True)
    ceiling = measure_ceiling(config, args.threads)

    # all models together: examples/s over every text, the metric over every text (example-weighted)
    total_flops = sum(m["flops"] for m in per_model.values())
    origin = provenance({name: str(d.relative_to(ROOT)) for name, d in directories.items()})
    results: dict = {**origin, "machine": machine_info() | {"bench_threads": args.threads}, "ceiling": ceiling,
                     "models": per_model, "paths": {}}
    from goldmine.export.parity import cpu_features

    results["machine"]["cpu_features"] = cpu_features()
    for path in paths:
        runs = [m["paths"][path] for m in per_model.values()]
        examples, seconds = sum(r["examples"] for r in runs), sum(r["seconds"] for r in runs)
        peak = ceiling["int8_gops"] if path == "onnx_int8" else ceiling["fp32_gflops"]
        results["paths"][path] = {
            "examples_per_s": round(examples / seconds, 2),
            "metric": round(sum(r["correct"] for r in runs) / examples, 5),
            "ceiling_share": round(total_flops / seconds / (peak * 1e9), 4),
            "fp32_ceiling_share": round(total_flops / seconds / (ceiling["fp32_gflops"] * 1e9), 4),
            "p50_ms": round(statistics.median([r["p50_ms"] for r in runs]), 2),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
            "per_model": {name: {"examples_per_s": round(r["examples"] / r["seconds"], 2),
                                 "metric": round(r["correct"] / r["examples"], 5), "p50_ms": round(r["p50_ms"], 2)}
                          for name, r in ((n, m["paths"][path]) for n, m in per_model.items())},
        }
    p = results["paths"]
    def rate(path: str) -> float:
        return p[path]["examples_per_s"]

    if {"onnx_int8", "pipeline_single", "pipeline_batch32", "torch"} <= p.keys():
        results["summary"] = {
            "int8_vs_pipeline_single": round(rate("onnx_int8") / rate("pipeline_single"), 2),
            "int8_vs_pipeline_batch32": round(rate("onnx_int8") / rate("pipeline_batch32"), 2),
            "int8_metric_loss_points": round(100 * (p["torch"]["metric"] - p["onnx_int8"]["metric"]), 2),
            "best_ceiling_share": max(v["ceiling_share"] for v in p.values()),
            "targets": TARGETS,
        }
    for m in per_model.values():
        m["flops"] = round(m["flops"] / 1e9, 2)
        m["gflops_total"] = m.pop("flops")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "inference.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results)
    print((RESULTS / "inference.md").read_text())


def write_markdown(results: dict) -> None:
    m, c = results["machine"], results["ceiling"]
    texts = ", ".join(f"{n} dev ({v['examples']}, mean {v['mean_tokens']} tokens)"
                      for n, v in results["models"].items())
    lines = [
        "# Inference benchmark", "",
        f"Machine: {m['cpu']} ({', '.join(m['cpu_features']['features'])}), {m['cores']} cores, "
        f"{m['bench_threads']} threads per path; date {m['date']}; torch {m['versions'].get('torch')}, "
        f"transformers {m['versions'].get('transformers')}.",
        f"Texts: {texts}.",
        f"Written by `{results['command']}` at commit {results['git_commit']}"
        f"{' (with uncommitted changes)' if results['git_dirty'] else ''}; models: "
        + ", ".join(f"{n} {d}" for n, d in results["model_dirs"].items()) + ".",
        f"Ceiling measured in this run: fp32 {c['fp32_gflops']} GFLOP/s, int8 {c['int8_gops']} GOP/s "
        f"(int8 GEMMs on the {m['cpu_features']['int8_gemm']} kernels).", "",
        "| path | examples/s | p50 single text (ms) | accuracy | ceiling share | share of fp32 ceiling "
        "| peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path, r in results["paths"].items():
        lines.append(f"| {path} | {r['examples_per_s']:.1f} | {r['p50_ms']:.2f} | {r['metric']:.4f} | "
                     f"{r['ceiling_share']:.3f} | {r['fp32_ceiling_share']:.3f} | {r['peak_rss_mb']:.0f} |")
    if s := results.get("summary"):
        t = s["targets"]
        lines += ["",
                  f"- int8 vs pipeline one at a time: **{s['int8_vs_pipeline_single']}x** "
                  f"(target {t['int8_vs_pipeline_single']}x)",
                  f"- int8 vs pipeline batch 32: **{s['int8_vs_pipeline_batch32']}x** "
                  f"(target {t['int8_vs_pipeline_batch32']}x)",
                  f"- int8 metric loss vs torch: **{s['int8_metric_loss_points']} points** "
                  f"(target ≤ {t['metric_loss_points']})",
                  f"- best share of the ceiling: **{s['best_ceiling_share']}** (target ≥ {t['ceiling_share']})"]
    lines += ["", "Per model:", "", "| model | path | examples/s | p50 (ms) | accuracy |", "|---|---|---:|---:|---:|"]
    for path, r in results["paths"].items():
        for name, v in r["per_model"].items():
            lines.append(f"| {name} | {path} | {v['examples_per_s']:.1f} | {v['p50_ms']:.2f} | {v['metric']:.4f} |")
    for name, v in results["models"].items():
        kernels = v.get("int8_kernels") or {}
        top = ", ".join(f"{op} {k['share'] * 100:.0f}%" for op, k in list(kernels.get("ops", {}).items())[:6])
        lines.append(f"\n{name} int8 parity on its dev set: {v['int8_parity']}; int8 time by kernel: {top}")
    (RESULTS / "inference.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
