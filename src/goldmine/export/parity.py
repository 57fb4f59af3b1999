"""The parity gate: does the exported graph still make the predictions the trained model makes?

Every runtime (torch, onnx, onnx-int8) evaluates the same sample of the run's own labeled data through
`goldmine.evaluation.evaluate`, the code `goldmine eval` runs, while its logits are kept. Against torch we
report the largest |logit difference| (over real, non-padding positions), how often the predicted labels agree
(classes; label sets for multi-label; tags of labeled words for NER) and the task metric. An export that loses
more than `max_loss` points of the metric is rejected.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from goldmine.data.readers import ReadOptions, read_file
from goldmine.data.schema import DataKind, LabeledData
from goldmine.errors import GoldmineError, ModelError
from goldmine.inference import out_of_scope
from goldmine.inference.model import Model
from goldmine.inference.runtime import OnnxBackend

log = logging.getLogger(__name__)

class ParityError(GoldmineError):
    """An export lost more of the task metric than allowed; `report` holds every figure."""

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


def parity_sample(model_dir: Path, model: Model, data: str | Path | None = None,
                  size: int | None = None, seed: int = 13) -> LabeledData:
    """Labeled examples (at most `size`): from `data` when given, else the run's own dev split (or test split).

    The run's `config.yaml` names its data files; a dev or test split that training cut off the training file
    is cut again the same way (same shares, same seed). Classification samples are drawn at random (seeded);
    NER keeps the first sentences in order, so each keeps its document context.
    """
    multi_label = True if model.task.multi_label else None
    if data is not None:
        labeled = read_file(data, _read_options(model_dir, multi_label))
    else:
        labeled = _run_split(model_dir, multi_label)
    rule = model.task.out_of_scope
    if rule is not None and not rule.explicit:  # examples labeled with no class of the model: not scorable
        labeled = out_of_scope.separate(labeled, rule.label)[0]
    if size is None or len(labeled) <= size:
        return labeled
    if labeled.kind is DataKind.TOKENS:
        indices = range(size)
    else:
        indices = sorted(np.random.default_rng(seed).choice(len(labeled), size, replace=False).tolist())
    sample = labeled.subset(indices)
    sample.path = f"{labeled.path} ({size} of {len(labeled)})"
    return sample


def _read_options(model_dir: Path, multi_label: bool | None) -> ReadOptions:
    from goldmine.config import load_config
    from goldmine.data.splits import read_options

    if not (model_dir / "config.yaml").is_file():
        return ReadOptions(multi_label=multi_label)
    return read_options(load_config(model_dir / "config.yaml").data, multi_label)


def _run_split(model_dir: Path, multi_label: bool | None) -> LabeledData:
    from goldmine.config import load_config
    from goldmine.data.splits import load_splits

    hint = "pass a labeled sample instead (--data FILE)"
    if not (model_dir / "config.yaml").is_file():
        raise ModelError(f"{model_dir} has no config.yaml naming its data; {hint}")
    try:
        config = load_config(model_dir / "config.yaml")
        splits = load_splits(config.data, multi_label, out_of_scope_label=config.out_of_scope.label)
    except GoldmineError as err:
        reason = " ".join(str(err).split())  # one line: DataError lists its issues on lines of their own
        raise ModelError(f"cannot read the data {model_dir}/config.yaml names ({reason}); {hint}") from err
    for name in ("dev", "test"):
        if splits[name] is not None and len(splits[name]):
            return splits[name]
    raise ModelError(f"the run's data has no dev or test examples; {hint}")


class _Tap(Model):
    """A model that keeps each example's logits (real positions only) as evaluation streams them."""

    def __init__(self, model: Model):
        super().__init__(None, model.task, model.meta, model.batch_size, backend=model.backend)
        self.kept: dict[int, np.ndarray] = {}

    def iter_logits(self, features: Sequence[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for idx, logits in super().iter_logits(features):
            for i, row in zip(idx, logits, strict=True):
                i = int(i)
                self.kept[i] = row[: len(features[i]["input_ids"])] if row.ndim == 2 else row  # (T, C) unpadded
            yield idx, logits

    def iter_embeddings(self, features: Sequence[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """A task scored as a whole (retrieval) embeds texts instead: keep each text's vector under its token ids
        (`Task.evaluates_itself`)."""
        for idx, vectors in super().iter_embeddings(features):
            if self.task.evaluates_itself:
                for i, row in zip(idx, vectors, strict=True):
                    self.kept[tuple(features[int(i)]["input_ids"])] = row
            yield idx, vectors


def measure(model: Model, sample: LabeledData) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
    """The task metric of `model` on `sample` (as `goldmine eval` computes it) and the logits behind it."""
    from goldmine.evaluation.evaluate import evaluate

    tap = _Tap(model)
    started = time.perf_counter()
    metrics = evaluate(tap, sample)
    seconds = time.perf_counter() - started
    key = model.task.default_metric
    figures = {"metric": float(metrics[key]), "eval_seconds": round(seconds, 3),
               "examples_per_s": round(len(sample) / seconds, 1) if seconds else None}
    return figures, tap.kept


def compare(task, features: Sequence[dict], reference: dict[int, np.ndarray],
            other: dict[int, np.ndarray]) -> dict[str, float]:
    """Largest |logit difference| and label agreement of `other` against `reference`, over every example's units
    (texts, or labeled words), by the task's rule (`Task.agreement`)."""
    max_diff, agree, total = 0.0, 0, 0
    for i, feature in enumerate(features):
        key = tuple(feature["input_ids"]) if task.evaluates_itself else i  # see _Tap.iter_embeddings
        ref, got = reference[key], other[key]
        max_diff = max(max_diff, float(np.abs(ref - got).max()))
        same, units = task.agreement(ref, got, feature)
        agree += same
        total += units
    return {"max_abs_logit_diff": max_diff, "label_agreement": agree / total if total else 1.0}


def gate(report: dict[str, Any], max_loss: float) -> list[str]:
    """Mark each exported runtime passed/failed in `report`; return a sentence per failure."""
    failures = []
    torch_metric = report["runtimes"]["torch"]["metric"]
    for name, figures in report["runtimes"].items():
        if name == "torch":
            continue
        figures["metric_loss_points"] = round((torch_metric - figures["metric"]) * 100, 4)
        figures["passed"] = figures["metric_loss_points"] <= max_loss
        if not figures["passed"]:
            failures.append(f"{name} loses {figures['metric_loss_points']:.2f} points of {report['metric']} "
                            f"(torch {torch_metric * 100:.2f} -> {figures['metric'] * 100:.2f})")
    report["max_loss_points"] = max_loss
    report["passed"] = not failures
    return failures


def profile_kernels(path: Path, name: str, model: Model, features: Sequence[dict], threads: int | None) -> dict:
    """Which kernels ran, on which execution provider, and where the time went, for one batch of `features`.

    From onnxruntime's own profiler: node events carry the op type of the (fused) kernel and its provider.
    """
    with tempfile.TemporaryDirectory(prefix="goldmine-ort-") as tmp:
        backend = OnnxBackend(path, name, threads, profile_dir=Path(tmp))
        probe = Model(None, model.task, model.meta, model.batch_size, backend=backend)
        next(iter(probe.iter_logits(features[: model.batch_size])))
        events = json.loads(Path(backend.session.end_profiling()).read_text())
    ops: dict[str, dict[str, Any]] = defaultdict(lambda: {"nodes": set(), "us": 0, "providers": set()})
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or "op_name" not in args or not event["name"].endswith("_kernel_time"):
            continue
        op = ops[args["op_name"]]
        op["nodes"].add(event["name"])
        op["us"] += int(event.get("dur", 0))
        op["providers"].add(args.get("provider", "?"))
    total = sum(op["us"] for op in ops.values()) or 1
    ranked = sorted(ops.items(), key=lambda kv: -kv[1]["us"])
    return {
        "providers": backend.session.get_providers(),
        "intra_op_threads": backend.threads,
        "ops": {k: {"nodes": len(v["nodes"]), "share": round(v["us"] / total, 4), "providers": sorted(v["providers"])}
                for k, v in ranked},
    }


def cpu_features() -> dict[str, Any]:
    """The CPU's vector/matrix extensions that decide which int8 and fp32 GEMM kernels onnxruntime's MLAS picks."""
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    flags: set[str] = set()
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text()
        if m := re.search(r"^flags\s*:\s*(.*)$", text, re.M):
            flags = set(m.group(1).split())
        if m := re.search(r"^model name\s*:\s*(.*)$", text, re.M):
            model = m.group(1).strip()
    present = [f for f in wanted if f in flags]
    # MLAS dispatches its u8s8 GEMM on CPUID, best first (onnxruntime/core/mlas/lib/platform.cpp).
    for flag, family in (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
                         ("avx512bw", "AVX-512BW"), ("avx2", "AVX2")):
        if flag in flags:
            int8 = family
            break
    else:
        int8 = "SSE (no AVX2)" if flags else "unknown"
    return {"model": model, "features": present, "int8_gemm": int8}


def render_parity(report: dict[str, Any], console: Console) -> None:
    """The parity figures as a table, then the verdict and which kernels ran."""
    metric = report["metric"]
    table = Table(title=f"Parity on {report['examples']} examples of {escape(str(report['data']))}")
    for column in ("runtime", metric, "loss (points)", "max |Δ logit|", "label agreement", "examples/s", "gate"):
        table.add_column(column, justify="left" if column in ("runtime", "gate") else "right")
    for name, fig in report["runtimes"].items():
        exported = name != "torch"
        table.add_row(
            name,
            f"{fig['metric'] * 100:.2f}",
            f"{fig['metric_loss_points']:+.2f}" if exported else "-",
            f"{fig['max_abs_logit_diff']:.2e}" if exported else "-",
            f"{fig['label_agreement'] * 100:.2f}%" if exported else "-",
            f"{fig['examples_per_s']:.0f}" if fig.get("examples_per_s") else "-",
            ("[green]pass[/]" if fig["passed"] else "[red]FAIL[/]") if exported else "reference",
        )
    console.print(table)
    step = report.get("one_example_points", 0)
    if step > report.get("max_loss_points", float("inf")) and report["max_loss_points"] >= 0:
        console.print(f"[yellow]note:[/] on {report['examples']} examples one changed prediction moves "
                      f"{report['metric']} by about {step:.2f} points, more than the {report['max_loss_points']} "
                      "allowed; a larger sample (--sample, --data) measures the loss more finely")
    if int8 := report.get("int8"):
        tried = "; ".join(f"{a['scheme']}: {a['metric_loss_points']:+.2f} points, "
                          f"{a['label_agreement'] * 100:.2f}% agreement" for a in int8["attempts"])
        console.print(f"int8 scheme: {int8['scheme']} (tried {tried})")
    cpu = report.get("machine", {})
    for name, fig in report["runtimes"].items():
        kernels = fig.get("kernels")
        if kernels:
            top = ", ".join(f"{op} {v['share'] * 100:.0f}%" for op, v in list(kernels["ops"].items())[:5])
            console.print(f"{name}: {'/'.join(kernels['providers'])}, {kernels['intra_op_threads']} threads; "
                          f"time by kernel: {top}")
    if cpu:
        features = escape(f"[{', '.join(cpu.get('features', [])) or 'no AVX'}]")
        console.print(f"cpu: {escape(cpu.get('model') or '?')} {features}; "
                      f"int8 GEMMs on the {cpu.get('int8_gemm')} kernels")


def render_decoder_parity(report: dict, console) -> None:
    """A causal LM's parity table: each runtime's reply metrics, loss against torch, agreement and speed."""
    from rich.table import Table

    table = Table(title=f"decoder parity on {report['examples']} replies of {report['data']} (greedy, "
                        f"{report['new_tokens']} new tokens)")
    for column in ("runtime", "ROUGE-L", "exact match", "loss (points)", "token agreement", "tokens/s", "passed"):
        table.add_column(column)
    for name, figures in report["runtimes"].items():
        table.add_row(name, f"{figures['rouge_l']:.4f}", f"{figures['exact_match']:.4f}",
                      str(figures.get("loss_points", "")), str(figures.get("token_agreement", "")),
                      str(figures.get("tokens_per_s", "")), str(figures.get("passed", "reference")))
    console.print(table)
