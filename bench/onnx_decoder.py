"""ONNX Runtime decoder benchmark: the bundled SmolLM2-135M-Instruct exported by `goldmine.export.decoder` (fp32 and
4-bit) and decoded through `DecodeEngine`, beside the torch fp32 engine, a plain transformers `generate()` loop and
llama.cpp on the Q4_1 GGUF the weights come from.

    python bench/onnx_decoder.py --sections export,agree,speed,llama --threads 1,2

    export  export fp32 and the 4-bit and 8-bit variants into `--out` (times and file sizes)
    agree   greedy replies (64 new tokens) of 10 chat prompts through each ONNX graph vs the torch fp32 engine: share
            of identical tokens position by position, replies identical; and each graph's rows decoded 4 at a time
            (left-padded, joining and leaving) vs each alone
    speed   single stream decode tokens/s (after the first token) and 8 concurrent rows' aggregate tokens/s (tokens
            written while all 8 were decoding, over that time), per runtime and thread count
    llama   llama-cpp-python (`--llama-python`), single stream, same prompts and threads
    profile onnxruntime's profiler over 32 one-row steps per variant: wall per step, time inside the session, and
            node time by operator type

The machine is shared: every speed figure is the median of `--repeats` runs; compare ratios within one run.
Results: bench/results/onnx_decoder.json / .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

RESULTS = ROOT / "bench" / "results"
PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain how a refrigerator works to a ten year old.",
    "My order arrived damaged. What should I do?",
    "Give me three tips for a job interview.",
    "What is the difference between weather and climate?",
    "How do I reset my password if I forgot my email?",
    "Describe the city of Paris in a few sentences.",
    "Why is the sky blue?",
    "Write a polite email asking my manager for a day off.",
    "List some healthy breakfast ideas and explain why they are good.",
]
# name -> export_decoder arguments (fp32 is the source of the others)
VARIANTS = {
    "fp32": {"weights": "fp32"},
    "int4": {"weights": "int4", "accuracy_level": 4, "output_bits": 8},  # the default export
    "int4-acc0": {"weights": "int4", "accuracy_level": 0, "output_bits": 8},  # float32 compute of the 4-bit blocks
    "int4-out4": {"weights": "int4", "accuracy_level": 4, "output_bits": 4},
    "int8": {"weights": "int8", "accuracy_level": 4, "output_bits": 8},  # Q8_0 blocks: a merged LoRA update survives
}


def variant_path(out: Path, name: str) -> Path:
    return out / name / f"decoder.{VARIANTS[name]['weights']}.onnx"


def load(model_dir: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    network = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return network, tokenizer


def prompt_ids(tokenizer) -> list[list[int]]:
    from goldmine.modeling.chat_encoding import render_ids

    return [render_ids(tokenizer, [{"role": "user", "content": text}], True) for text in PROMPTS]


def run_export(args, model_dir: str) -> dict:
    """The fp32 graph once, then each 4-bit variant quantised from it into a directory of its own."""
    import shutil

    from goldmine.export.decoder import export_decoder, quantize_nbits

    measured = {}
    started = time.perf_counter()
    fp32 = export_decoder(model_dir, args.out / "fp32", weights="fp32")
    measured["fp32"] = {"seconds": round(time.perf_counter() - started, 1), "mb": size_mb(fp32)}
    manifest = json.loads((fp32.parent / "decoder.json").read_text())
    for name, settings in VARIANTS.items():
        if name == "fp32":
            continue
        target = variant_path(args.out, name)
        started = time.perf_counter()
        details = quantize_nbits(fp32, target, manifest["vocab_size"], accuracy_level=settings["accuracy_level"],
                                 output_bits=settings["output_bits"], bits=8 if settings["weights"] == "int8" else 4)
        shutil.copy(fp32.parent / "decoder.json", target.parent / "decoder.json")
        measured[name] = {"seconds": round(time.perf_counter() - started, 1), "mb": size_mb(target), **details}
    return {"export": measured}


def size_mb(graph: Path) -> float:
    return round(sum(p.stat().st_size for p in (graph, graph.with_name(graph.name + ".data")) if p.exists()) / 1e6, 1)


def decode(runtime, tokenizer, ids: list[list[int]], max_batch: int, new: int, threads: int) -> list[list[int]]:
    from goldmine.inference.generation import DecodeEngine, SamplingParams

    engine = DecodeEngine(runtime, tokenizer, max_batch=max_batch, threads=threads, max_queue_wait_s=float("inf"))
    try:
        return engine.generate(ids, SamplingParams(max_tokens=new))
    finally:
        engine.close()


def agreement(replies: list[list[int]], reference: list[list[int]], new: int) -> dict:
    """Tokens equal position by position (a reply shorter than the other counts its missing positions as
    different), over `new` positions per prompt; and replies identical as a whole."""
    same = sum(sum(a == b for a, b in zip(r, w, strict=False)) + (new - max(len(r), len(w)))
               for r, w in zip(replies, reference, strict=True))
    return {"token_agreement": round(same / (new * len(reference)), 4),
            "identical_replies": sum(r == w for r, w in zip(replies, reference, strict=True)),
            "replies": len(reference)}


def run_agree(args, model_dir: str) -> dict:
    from goldmine.inference.onnx_decoder import OnnxDecoder

    network, tokenizer = load(model_dir)
    ids = prompt_ids(tokenizer)
    new = args.new_tokens
    reference = decode(network, tokenizer, ids, 1, new, args.max_threads)
    measured = {"reference": "torch fp32 DecodeEngine, one row at a time", "new_tokens": new}
    for name in args.variants:
        runtime = OnnxDecoder(variant_path(args.out, name), threads=args.max_threads)
        alone = [decode(runtime, tokenizer, [one], 1, new, args.max_threads)[0] for one in ids]
        together = decode(runtime, tokenizer, ids, 4, new, args.max_threads)
        measured[name] = {**agreement(alone, reference, new),
                          "batched_equals_alone": sum(a == t for a, t in zip(alone, together, strict=True)),
                          "first_divergence": [next((i for i, (a, b) in enumerate(zip(r, w, strict=False)) if a != b),
                                                    None) for r, w in zip(alone, reference, strict=True)]}
        print(name, measured[name], flush=True)
    return {"agree": measured}


class Timed:
    """A request whose token events are timestamped."""

    def __init__(self, ids: list[int], new: int):
        from goldmine.inference.generation import GenerationRequest, SamplingParams

        self.times: list[float] = []
        self.done = threading.Event()
        self.request = GenerationRequest(ids, SamplingParams(max_tokens=new), self.emit)

    def emit(self, event) -> None:
        self.times.extend([time.perf_counter()] * event.tokens)
        if event.finish_reason is not None:
            self.done.set()


def timed_run(engine, ids: list[list[int]], new: int) -> list[Timed]:
    requests = [Timed(one, new) for one in ids]
    for r in requests:
        engine.submit(r.request)
    for r in requests:
        r.done.wait()
    return requests


def speed_of(runtime, tokenizer, ids: list[list[int]], threads: int, new: int, repeats: int) -> dict:
    """Single stream: (tokens - 1) / (last - first token time), median over prompts and repeats. 8 rows: tokens
    written between the moment the 8th row wrote its first token and the moment the first row finished, over that
    time (every row decoding), median over repeats."""
    from goldmine.inference.generation import DecodeEngine

    engine = DecodeEngine(runtime, tokenizer, max_batch=8, threads=threads, max_queue_wait_s=float("inf"))
    try:
        timed_run(engine, ids[:1], 4)  # warm-up
        singles = []
        for _ in range(repeats):
            for one in ids[:args_prompts_single]:
                (r,) = timed_run(engine, [one], new)
                if len(r.times) > 8:
                    singles.append((len(r.times) - 1) / (r.times[-1] - r.times[0]))
        eights = []
        for _ in range(repeats):
            requests = timed_run(engine, ids[:8], new)
            start = max(r.times[0] for r in requests)
            end = min(r.times[-1] for r in requests)
            tokens = sum(sum(start < t <= end for t in r.times) for r in requests)
            if end > start:
                eights.append(tokens / (end - start))
    finally:
        engine.close()
    return {"single_tokens_per_s": round(statistics.median(singles), 2),
            "rows8_tokens_per_s": round(statistics.median(eights), 2) if eights else None,
            "single_runs": [round(s, 1) for s in singles], "rows8_runs": [round(s, 1) for s in eights]}


args_prompts_single = 3


def generate_speed(network, tokenizer, ids: list[list[int]], threads: int, new: int, repeats: int) -> dict:
    """transformers' `generate()`, one prompt, greedy, fp32: (new - 1) tokens over the time beyond the first."""
    import torch

    torch.set_num_threads(threads)
    rates = []
    with torch.inference_mode():
        network.generate(torch.tensor([ids[0]]), max_new_tokens=4, do_sample=False)
        for _ in range(repeats):
            for one in ids[:args_prompts_single]:
                x = torch.tensor([one])
                t0 = time.perf_counter()
                network.generate(x, max_new_tokens=1, do_sample=False)
                first = time.perf_counter() - t0
                t0 = time.perf_counter()
                out = network.generate(x, max_new_tokens=new, do_sample=False, eos_token_id=tokenizer.eos_token_id)
                written = out.shape[1] - x.shape[1]
                if written > 8:
                    rates.append((written - 1) / (time.perf_counter() - t0 - first))
    return {"single_tokens_per_s": round(statistics.median(rates), 2), "single_runs": [round(r, 1) for r in rates]}


def run_speed(args, model_dir: str) -> dict:
    from goldmine.inference.onnx_decoder import OnnxDecoder

    network, tokenizer = load(model_dir)
    ids = prompt_ids(tokenizer)
    measured: dict = {}
    for threads in args.threads:
        row = measured.setdefault(str(threads), {})
        row["generate_fp32"] = generate_speed(network, tokenizer, ids, threads, args.new_tokens, args.repeats)
        print(threads, "generate_fp32", row["generate_fp32"], flush=True)
        row["torch_fp32"] = speed_of(network, tokenizer, ids, threads, args.new_tokens, args.repeats)
        print(threads, "torch_fp32", row["torch_fp32"], flush=True)
        for name in args.variants:
            runtime = OnnxDecoder(variant_path(args.out, name), threads=threads)
            row[f"onnx_{name}"] = speed_of(runtime, tokenizer, ids, threads, args.new_tokens, args.repeats)
            print(threads, name, row[f"onnx_{name}"], flush=True)
            del runtime
    return {"speed": measured}


def run_profile(args, model_dir: str) -> dict:
    """Where one decoding step's time goes, per variant, one row, `--threads`' largest count: onnxruntime's own
    profiler over `PROFILE_STEPS` steps after a prompt's prefill. Per step: the wall time seen from Python (the
    engine's `OnnxDecoder.step`, numpy in and out), the time inside `session.run`, and the nodes' time by operator
    type (share of all node time)."""
    import tempfile

    import numpy as np
    import torch

    from goldmine.inference.onnx_decoder import OnnxDecoder

    _, tokenizer = load(model_dir)
    prompt = prompt_ids(tokenizer)[0]
    measured = {"steps": PROFILE_STEPS, "threads": args.max_threads, "rows": 1}
    for name in args.variants:
        with tempfile.TemporaryDirectory() as folder:
            runtime = OnnxDecoder(variant_path(args.out, name), threads=args.max_threads,
                                  profile_prefix=str(Path(folder) / name))
            logits, cache = runtime.prefill(prompt)
            token = int(logits[0].argmax())
            length = len(prompt)
            walls = []
            for _ in range(PROFILE_STEPS):
                started = time.perf_counter()
                logits, cache = runtime.step(torch.tensor([[token]]), torch.ones(1, length + 1, dtype=torch.long),
                                             torch.tensor([[length]]), cache)
                walls.append(time.perf_counter() - started)
                token, length = int(logits[0].argmax()), length + 1
            trace = json.loads(Path(runtime.session.end_profiling()).read_text())
        runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
        prefill_end = runs[0]["ts"] + runs[0]["dur"]  # the first run is the prompt's prefill: left out
        runs = [e["dur"] for e in runs[1:]]
        by_op: dict[str, float] = {}
        for event in trace:
            if (event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")
                    and event["ts"] >= prefill_end):
                op = event.get("args", {}).get("op_name", "?")
                by_op[op] = by_op.get(op, 0.0) + event["dur"]
        total = sum(by_op.values()) or 1.0
        measured[name] = {
            "step_ms": round(1000 * float(np.median(walls)), 2),
            "session_run_ms": round(float(np.median(runs)) / 1000, 2) if runs else None,
            "nodes_ms_per_step": round(total / 1000 / PROFILE_STEPS, 2),
            "ops_share": {op: round(t / total, 4) for op, t in sorted(by_op.items(), key=lambda kv: -kv[1])[:10]}}
        print(name, measured[name], flush=True)
        del runtime
    return {"profile": measured}


PROFILE_STEPS = 32


LLAMA_SCRIPT = r"""
import json, sys, time, statistics
from llama_cpp import Llama
gguf, threads, new, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
prompts = json.loads(sys.argv[4])
llm = Llama(model_path=gguf, n_threads=threads, n_threads_batch=threads, n_ctx=1024, verbose=False, seed=0)
llm.create_chat_completion(messages=[{"role": "user", "content": prompts[0]}], max_tokens=4, temperature=0)
rates = []
for _ in range(repeats):
    for text in prompts:
        first = None; times = []
        for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": text}], max_tokens=new,
                                                temperature=0, stream=True):
            if chunk["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter())
        if len(times) > 8:
            rates.append((len(times) - 1) / (times[-1] - times[0]))
print(json.dumps({"single_tokens_per_s": round(statistics.median(rates), 2),
                  "single_runs": [round(r, 1) for r in rates]}))
"""


LLAMA_GREEDY = r"""
import json, sys
from llama_cpp import Llama
gguf, threads, new, prompts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
llm = Llama(model_path=gguf, n_threads=threads, n_ctx=1024, verbose=False, seed=0)
replies = []
for ids in prompts:
    llm.reset()
    reply = []
    for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
        if token == llm.token_eos() or len(reply) == new:
            break
        reply.append(token)
    replies.append(reply)
print(json.dumps(replies))
"""


def run_llama(args) -> dict:
    from goldmine.modeling.decoder import bundled_gguf, resolve_decoder

    measured = {}
    for threads in args.threads:
        out = subprocess.run([args.llama_python, "-c", LLAMA_SCRIPT, str(bundled_gguf()), str(threads),
                              str(args.new_tokens), json.dumps(PROMPTS[:args_prompts_single]), str(args.repeats)],
                             capture_output=True, text=True, check=True)
        measured[str(threads)] = json.loads(out.stdout.strip().splitlines()[-1])
        print(threads, "llama.cpp", measured[str(threads)], flush=True)
    network, tokenizer = load(resolve_decoder("smollm2"))
    ids = prompt_ids(tokenizer)
    out = subprocess.run([args.llama_python, "-c", LLAMA_GREEDY, str(bundled_gguf()), str(args.max_threads),
                          str(args.new_tokens), json.dumps(ids)], capture_output=True, text=True, check=True)
    replies = json.loads(out.stdout.strip().splitlines()[-1])
    stop = {tokenizer.eos_token_id}
    replies = [r[:next((i for i, t in enumerate(r) if t in stop), len(r))] for r in replies]
    reference = decode(network, tokenizer, ids, 1, args.new_tokens, args.max_threads)
    measured["agree"] = {**agreement(replies, reference, args.new_tokens), "first_divergence": [
        next((i for i, (a, b) in enumerate(zip(r, w, strict=False)) if a != b), None)
        for r, w in zip(replies, reference, strict=True)]}
    print("llama.cpp agreement with torch fp32", measured["agree"], flush=True)
    return {"llama_cpp": measured}


def main() -> None:
    from goldmine.modeling.decoder import resolve_decoder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="export,agree,speed,llama")
    parser.add_argument("--out", type=Path, default=Path("/tmp/goldmine-onnx-decoder"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--variants", default="fp32,int4")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--llama-python", default="/work/bench-llama/bin/python")
    parser.add_argument("--results", type=Path, default=RESULTS / "onnx_decoder.json")
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    args.max_threads = max(args.threads)
    args.variants = args.variants.split(",")
    model_dir = resolve_decoder("smollm2")
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    sections = args.sections.split(",")
    for section, run in (("export", lambda: run_export(args, model_dir)),
                         ("agree", lambda: run_agree(args, model_dir)),
                         ("speed", lambda: run_speed(args, model_dir)), ("llama", lambda: run_llama(args)),
                         ("profile", lambda: run_profile(args, model_dir))):
        if section in sections:
            update = run()
            for key, value in update.items():  # a section replaces only what it measured
                if isinstance(value, dict) and isinstance(results.get(key), dict):
                    results[key].update(value)
                else:
                    results[key] = value
            args.results.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
