"""Export a causal LM (Llama architecture) to ONNX with its key/value cache as explicit inputs and outputs, then
store its weights in 4 bits, block-wise, for onnxruntime's `MatMulNBits`.

Why: decoding on a CPU is bound by memory bandwidth. Every step reads every weight once, 540 MB for SmolLM2-135M in
float32 and ~90 MB in 4 bits, so the step runs about as much faster as the weights are smaller. torch's dynamic int8
was tried and rejected: it quantises each activation with one scale per tensor, and this small model's greedy replies
diverged after a few tokens. `MatMulNBits` with accuracy_level 4 quantises activations to int8 in blocks of 32 (as
llama.cpp does for its Q4 x Q8 dot products), so the error stays local: its greedy replies leave torch fp32's about
as early as llama.cpp's do, at llama.cpp's speed; accuracy_level=0 computes the 4-bit blocks in float32, closer to
torch and 0.74x as fast (bench/results/onnx_decoder.md).

The graph's signature is the `DecoderRuntime` one, flattened (L = tokens already in the cache, T = new tokens):

    inputs   input_ids (B, T), attention_mask (B, L + T), position_ids (B, T), past.{i}.key/value (B, kv, L, d)
    outputs  logits (B, V) of the last position only, present.{i}.key/value (B, kv, L + T, d)

Only the last position's logits are computed: a prompt's prefill would otherwise multiply every position by the
49152 x 576 output matrix for logits nobody reads. Prefill is the same graph with L = 0 (empty past tensors), so one
file serves both. The network is traced in its eager attention form (matmul, mask, softmax), which keeps the engine's
left padding exactly as torch computes it.

Tied embeddings: the exporter computes the output projection as MatMul(x, Transpose(embedding)), which a weight
quantiser cannot see as a constant. `untie_output_projection` gives that MatMul its own transposed copy first, so the
output projection (49152 x 576, a fifth of a 4-bit step's reads) is quantised too, in 8 bits by default: the bundled
GGUF stores the embedding in Q8_0, which 8-bit blocks reproduce exactly. The embedding lookup itself reads only B rows
per step and stays float32.

The 4-bit format is `goldmine.export.blockwise`'s: Q4_1 blocks (a step and a float offset per 32 weights), which hold
the bundled GGUF's Q4_1 weights without loss (onnxruntime's own quantiser rounds each block's offset to an integer
zero point and does not).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import torch

from goldmine.errors import ConfigError, ModelError
from goldmine.export.onnx import EXPORTER_LOGGERS, quiet_logs
from goldmine.inference.onnx_decoder import MANIFEST

log = logging.getLogger(__name__)

WEIGHTS = ("fp32", "int4", "int8")
FILES = {"fp32": "decoder.fp32.onnx", "int4": "decoder.int4.onnx", "int8": "decoder.int8.onnx"}
BASE_INPUTS = ["input_ids", "attention_mask", "position_ids"]


def past_names(layers: int) -> list[str]:
    return [f"past.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]


class FlatCacheDecoder(torch.nn.Module):
    """The causal LM with its cache as flat tensors: (input_ids, mask, positions, past) -> (last logits, *present).
    The exporter sees plain tensors in and out; inside, the cache is rebuilt as the `DynamicCache` transformers
    expects."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network
        self.layers = network.config.num_hidden_layers

    def forward(self, input_ids, attention_mask, position_ids, past: tuple[torch.Tensor, ...]):
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(self.layers)])
        out = self.network(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           cache=cache, use_cache=True, logits_to_keep=1)
        present = [t for layer in cache.layers for t in (layer.keys, layer.values)]
        return (out.logits[:, -1], *present)  # (B, V), then (B, kv, L + T, d) per layer and kind


def cache_shape(config) -> tuple[int, int]:
    """(kv heads, head dim) of a transformers config."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_key_value_heads, head_dim


def example_inputs(config) -> tuple:
    """Two rows, three new tokens after a past of five, the first row left-padded by two: no axis is 0 or 1, which
    torch.export would specialise, and the mask holds real padding."""
    batch, new, past = 2, 3, 5
    kv_heads, head_dim = cache_shape(config)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch, new), generator=generator)
    mask = torch.ones(batch, past + new, dtype=torch.long)
    mask[0, :2] = 0
    positions = torch.arange(past, past + new).repeat(batch, 1)
    positions[0] -= 2
    cache = tuple(torch.randn(batch, kv_heads, past, head_dim, generator=generator)
                  for _ in range(2 * config.num_hidden_layers))
    return ids, mask, positions, cache


def export_fp32(network: torch.nn.Module, path: Path) -> dict:
    """Trace `network` (a transformers causal LM) into `path`, its weights in `path`.data."""
    config = network.config
    wrapper = FlatCacheDecoder(network.eval()).eval()
    batch, new, past = torch.export.Dim("batch"), torch.export.Dim("sequence"), torch.export.Dim("past")
    dynamic = ({0: batch, 1: new}, {0: batch, 1: torch.export.Dim.AUTO}, {0: batch, 1: new},
               tuple({0: batch, 2: past} for _ in range(2 * config.num_hidden_layers)))
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = config._attn_implementation
    network.set_attn_implementation("eager")  # matmul + mask + softmax: what onnxruntime runs best on CPU
    try:
        with warnings.catch_warnings(), quiet_logs(*EXPORTER_LOGGERS):
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, example_inputs(config), str(path),
                              input_names=BASE_INPUTS + past_names(wrapper.layers),
                              output_names=["logits", *present_names(wrapper.layers)], dynamic_shapes=dynamic,
                              dynamo=True, optimize=True, external_data=True, verbose=False)
    except Exception as err:  # the exporter raises many types; all mean "this network did not export"
        raise ModelError(f"ONNX export of {type(network).__name__} failed: {err}") from err
    finally:
        network.set_attn_implementation(previous)
    return {"exporter": "torch.onnx.export(dynamo=True)", "attention": "eager"}


def untie_output_projection(model, vocab_size: int) -> list[str]:
    """The MatMuls of the output projection (weight (hidden, vocab)), each given a constant weight: the exporter
    leaves a large tied one as Transpose(embedding), which the weight quantiser cannot see as a constant, so such a
    MatMul gets its own transposed initializer. (A small one is folded into a constant already.)"""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    transposes = {node.output[0]: node for node in graph.node
                  if node.op_type == "Transpose" and node.input[0] in initializers}
    found = []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        if node.input[1] in transposes:
            transpose = transposes[node.input[1]]
            weight = numpy_helper.to_array(initializers[transpose.input[0]])
            perm = [list(a.ints) for a in transpose.attribute if a.name == "perm"]
            weight = np.ascontiguousarray(weight.transpose(*perm[0]) if perm else weight.T)
            if weight.shape[-1] != vocab_size:
                continue
            node.input[1] = f"{transpose.input[0]}.transposed"
            graph.initializer.append(numpy_helper.from_array(weight, node.input[1]))
            found.append(node.name)
        elif node.input[1] in initializers and initializers[node.input[1]].dims[-1] == vocab_size:
            found.append(node.name)
    used = {name for node in graph.node for name in node.input}
    for transpose in transposes.values():
        if transpose.output[0] not in used:
            graph.node.remove(transpose)
    return found


def quantize_nbits(source: Path, target: Path, vocab_size: int, block_size: int = 32,
                   accuracy_level: int | None = 4, output_bits: int = 8, keep_rank: int = 0, bits: int = 4) -> dict:
    """Write `source` (an fp32 decoder graph) to `target` with every MatMul weight in `bits` (4: Q4_1 form, 8: Q8_0
    form), block-wise (see `goldmine.export.blockwise`), and the output projection in `output_bits` (8, 4, or 0
    for float32)."""
    import onnx

    from goldmine.export.blockwise import quantize_matmuls

    model = onnx.load(str(source))
    output = frozenset(untie_output_projection(model, vocab_size))
    eight_bit = output if output_bits == 8 else frozenset()
    if bits == 8:
        constants = {init.name for init in model.graph.initializer}
        eight_bit = frozenset(node.name for node in model.graph.node if node.op_type == "MatMul"
                              and node.input[1] in constants) - (output if output_bits != 8 else frozenset())
    counts = quantize_matmuls(model, block_size, accuracy_level or 0, eight_bit=eight_bit,
                              skip=output if not output_bits else frozenset(), keep_rank=keep_rank)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in (target, target.with_name(target.name + ".data")):
        stale.unlink(missing_ok=True)
    onnx.save(model, str(target), save_as_external_data=True, location=target.name + ".data")
    return {"bits": bits, "format": "Q8_0 blocks" if bits == 8 else
            "Q4_1 blocks (step + float offset), output projection Q8_0 blocks",
            "block_size": block_size, "accuracy_level": accuracy_level, "output_projection_bits": output_bits or 32,
            "output_projection_nodes": sorted(output), "matmuls": counts}


def export_decoder(model_dir: str | Path, out_dir: str | Path, weights: str = "int4", block_size: int = 32,
                   accuracy_level: int | None = 4, output_bits: int = 8, network: torch.nn.Module | None = None
                   ) -> Path:
    """Export the causal LM in `model_dir` to `out_dir` for `OnnxDecoder`; returns the graph's path.

    Args:
        model_dir: a transformers directory (e.g. `goldmine.modeling.decoder.resolve_decoder("smollm2")`).
        out_dir: where `decoder.fp32.onnx` (always, the source of the others) and `decoder.int4.onnx` go, each with
            its `.data` file, and `decoder.json` (what each graph is, for the runtime and for people).
        weights: "fp32", "int4" (MatMul weights in 4 bits, block-wise, asymmetric) or "int8" (8 bits, block-wise,
            symmetric: Q8_0).
        block_size: weights per 4-bit block; 32 matches Q4_1. The input dimension must be a multiple of it.
        accuracy_level: `MatMulNBits`' compute type: 4 = int8 activations (fastest on CPU), 0/None = float32.
        output_bits: bits of the output projection (the tied lm_head): 8 (Q8_0, as the bundled GGUF stores the
            embedding), 4, or 0 for float32.
        network: export this network instead of loading `model_dir` (a LoRA run's base with its adapter still
            unmerged: its small A and B matrices stay float32 beside the 4-bit base weights).
    """
    from transformers import AutoModelForCausalLM

    if weights not in WEIGHTS:
        raise ConfigError(f"weights: {weights!r} is not one of {list(WEIGHTS)}")
    if output_bits not in (0, 4, 8):
        raise ConfigError(f"output_bits: {output_bits} is not one of [0, 4, 8]")
    out = Path(out_dir)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    fp32 = out / FILES["fp32"]
    if not fp32.is_file() or manifest.get("source") != str(Path(model_dir).resolve()):
        started = time.perf_counter()
        if network is None:
            network = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        config = network.config
        details = export_fp32(network, fp32)
        kv_heads, head_dim = cache_shape(config)
        manifest = {"source": str(Path(model_dir).resolve()), "layers": config.num_hidden_layers,
                    "kv_heads": kv_heads, "head_dim": head_dim, "vocab_size": config.vocab_size,
                    "graphs": {"fp32": {"file": fp32.name, **details,
                                        "export_s": round(time.perf_counter() - started, 1)}}}
        manifest_path.write_text(json.dumps(manifest, indent=2))
    if weights == "fp32":
        return fp32
    started = time.perf_counter()
    target = out / FILES[weights]
    rank = getattr(network, "lora_rank", 0)  # set by `_unmerged`: the adapter's A and B stay float32
    details = quantize_nbits(fp32, target, manifest["vocab_size"], block_size, accuracy_level, output_bits, rank,
                             bits=8 if weights == "int8" else 4)
    manifest["graphs"][weights] = {"file": target.name, **details,
                                   "quantize_s": round(time.perf_counter() - started, 1)}
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return target


# ---- a causal LM run directory: export, parity gate, install ----

RUN_EXPORT_DIR = "onnx-decoder"  # beside an encoder's onnx/: a decoder's graphs and their parity report
RUN_FILES = {"onnx": FILES["fp32"], "onnx-int4": FILES["int4"], "onnx-int8": FILES["int8"]}
QUANTIZE = {"int4": "onnx-int4", "int8": "onnx-int8"}  # --quantize -> the runtime its graph serves as
PARITY_NEW_TOKENS = 64


def quantized_graphs(quantize: str | None) -> list[str]:
    """`--quantize` of a causal LM: none, int4, int8, or both as "int4,int8" (each graph then goes through the gate
    and a server's `auto` runtime serves the fastest that passed)."""
    wanted = [q.strip() for q in quantize.split(",")] if quantize else []
    if any(q not in QUANTIZE for q in wanted) or len(set(wanted)) != len(wanted):
        raise ConfigError(f"a causal LM exports with --quantize int4, int8, int4,int8 or none, not {quantize!r}")
    return wanted


def export_causal_lm(model_dir: Path, quantize: str | None, *, force: bool, max_loss: float,
                     data: str | Path | None, sample_size: int | None, threads: int | None):
    """Export a `task: causal_lm` run (full weights or a LoRA adapter, merged for the export) to
    `<run>/onnx-decoder/`, after a parity gate: the sample's greedy replies through each exported graph must score
    ROUGE-L and exact match within `max_loss` points of the same replies through torch (the metric rule of issue 14:
    token-for-token equality is not expected of 4-bit weights with int8 activations, as it is not of llama.cpp).
    parity.json records both metrics, the token agreement and the decoding speed of every runtime."""
    import shutil
    import tempfile

    from goldmine.export.exporter import ExportResult, _install
    from goldmine.export.parity import ParityError, parity_sample
    from goldmine.inference.generation import DecodeEngine, SamplingParams
    from goldmine.inference.model import Model
    from goldmine.inference.onnx_decoder import OnnxDecoder
    from goldmine.modeling.chat_encoding import messages_of
    from goldmine.tasks.causal_lm import reply_metrics

    wanted = quantized_graphs(quantize)
    reference = Model.load(model_dir, runtime="torch")
    task, tokenizer = reference.task, reference.task.tokenizer
    sample = parity_sample(model_dir, reference, data, sample_size if sample_size is not None else 32)
    prompts = [task.prompt_ids(messages_of(example)[:-1]) for example in sample.examples]
    references = [messages_of(example)[-1]["content"] for example in sample.examples]
    params = SamplingParams(max_tokens=PARITY_NEW_TOKENS)

    def replies_through(runtime) -> tuple[list[list[int]], float]:
        engine = DecodeEngine(runtime, tokenizer, max_batch=8, max_queue=max(64, len(prompts)),
                              max_queue_wait_s=float("inf"), threads=threads)
        try:
            started = time.perf_counter()
            ids = engine.generate(prompts, params)
            return ids, sum(map(len, ids)) / (time.perf_counter() - started)
        finally:
            engine.close()

    staging = model_dir / f"{RUN_EXPORT_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        torch_ids, torch_speed = replies_through(reference.network)
        texts = [tokenizer.decode(r, skip_special_tokens=True).strip() for r in torch_ids]
        runtimes: dict[str, dict] = {"torch": {**reply_metrics(references, texts), "tokens_per_s": round(torch_speed,
                                                                                                         1)}}
        with tempfile.TemporaryDirectory(dir=model_dir) as source:  # the merged weights, as transformers saves them
            reference.network.save_pretrained(source)
            tokenizer.save_pretrained(source)
            files = {"onnx": export_decoder(source, staging, weights="fp32")}
            if "int8" in wanted:  # 8-bit steps are 16 times finer than 4-bit ones: the merged update survives
                files["onnx-int8"] = export_decoder(source, staging, weights="int8")
        if "int4" in wanted:
            # 4 bits cannot hold a LoRA update merged into the base weights (it is smaller than one 4-bit step of
            # them, and rounding brings the base model back), so a LoRA run's int4 graph keeps its adapter unmerged:
            # the base weights in 4 bits (exact for the bundled GGUF's), x A B beside them in float32
            unmerged = staging / "unmerged"
            files["onnx-int4"] = export_decoder(model_dir, unmerged, weights="int4",
                                                network=_unmerged(model_dir, reference) if reference.meta.adapter
                                                else reference.network)
            for graph in (files["onnx-int4"], files["onnx-int4"].with_name(files["onnx-int4"].name + ".data")):
                graph.rename(staging / graph.name)
            files["onnx-int4"] = staging / files["onnx-int4"].name
            manifest = json.loads((staging / MANIFEST).read_text())
            manifest["graphs"]["int4"] = json.loads((unmerged / MANIFEST).read_text())["graphs"]["int4"]
            manifest["graphs"]["int4"]["adapter"] = "unmerged (float32)" if reference.meta.adapter else None
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
            shutil.rmtree(unmerged)
        manifest = json.loads((staging / MANIFEST).read_text())
        manifest["source"] = str(model_dir.resolve())
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        failures = []
        for name, path in files.items():
            ids, speed = replies_through(OnnxDecoder(path, threads=threads))
            texts = [tokenizer.decode(r, skip_special_tokens=True).strip() for r in ids]
            figures = reply_metrics(references, texts)
            same = sum(a == b for x, y in zip(torch_ids, ids, strict=True) for a, b in zip(x, y, strict=False))
            loss = {k: round(100 * (runtimes["torch"][k] - figures[k]), 2) for k in ("rouge_l", "exact_match")}
            passed = all(v <= max_loss for v in loss.values())
            runtimes[name] = {**figures, "loss_points": loss, "passed": passed, "tokens_per_s": round(speed, 1),
                              "token_agreement": round(same / max(1, sum(map(len, torch_ids))), 4),
                              "identical_replies": sum(x == y for x, y in zip(torch_ids, ids, strict=True))}
            if not passed:
                failures.append(f"{name} loses {loss} points")
        report = {"model_dir": str(model_dir), "task": task.name, "data": sample.path, "examples": len(prompts),
                  "new_tokens": PARITY_NEW_TOKENS, "max_loss": max_loss, "runtimes": runtimes,
                  "forced": bool(failures) and force}
        if failures and not force:
            raise ParityError(f"export rejected: {'; '.join(failures)} on {len(prompts)} replies of {sample.path}; "
                              f"the limit is {max_loss} points (max_loss). Pass --force to keep it anyway.", report)
        (staging / "parity.json").write_text(json.dumps(report, indent=2))
        target = _install(staging, model_dir / RUN_EXPORT_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(target, {k: target / v.name for k, v in files.items()}, report, not failures,
                        report["forced"])


def _unmerged(model_dir: Path, reference) -> torch.nn.Module:
    """A LoRA run's base model with its adapter injected and not merged (eval mode)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(type(reference.task).resolve_base(reference.meta.base_model),
                                                dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, model_dir)
    network = adapted.get_base_model().eval()
    network.lora_rank = max(config.r for config in adapted.peft_config.values())
    return network


def served_graph(run_dir: Path, requested: str) -> Path | None:
    """The exported graph a server runs for a causal LM run: `requested` (onnx | onnx-int4 | onnx-int8), or for auto
    the one whose parity passed with the most tokens/s in its parity run (int4 is not always faster: a LoRA run's
    int4 graph carries its adapter's small float32 MatMuls beside every projection); None for torch (or auto with
    no export)."""
    directory = Path(run_dir) / RUN_EXPORT_DIR
    if requested == "torch":
        return None
    parity = json.loads((directory / "parity.json").read_text()) if (directory / "parity.json").is_file() else {}
    if requested in RUN_FILES:
        path = directory / RUN_FILES[requested]
        if not path.is_file():
            flag = {runtime: f" --quantize {q}" for q, runtime in QUANTIZE.items()}.get(requested, "")
            raise ModelError(f"{run_dir} has no {requested} decoder export; run `goldmine export {run_dir}{flag}` "
                             "first")
        return path
    passed = {name: parity["runtimes"][name].get("tokens_per_s", 0) for name in ("onnx-int4", "onnx-int8", "onnx")
              if (directory / RUN_FILES[name]).is_file() and name in parity.get("runtimes", {})
              and (parity["runtimes"][name].get("passed") or parity.get("forced"))}
    return directory / RUN_FILES[max(passed, key=passed.get)] if passed else None
