"""`goldmine export`: a run directory -> ONNX fp32 (+ int8) graphs in `<run>/onnx/`, behind a parity gate.

    setup   load the run on torch (LoRA adapters merged) and the parity sample (the run's dev data)
    export  fp32 graph, then int8, into `<run>/onnx.partial/`
    parity  evaluate torch, onnx and onnx-int8 on the sample; reject a runtime that loses > max_loss points
    save    move the graphs into `<run>/onnx/` (replacing an earlier export) with manifest.json and parity.json

A rejected export leaves `<run>/onnx/` as it was (an earlier, accepted export keeps serving) and writes its
figures to `<run>/onnx/parity.rejected.json`; `force=True` keeps it anyway and records that it was forced.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from goldmine.errors import ConfigError, ModelError
from goldmine.export import onnx as onnx_export
from goldmine.export import quantize as quantization
from goldmine.export.parity import (
    ParityError,
    compare,
    cpu_features,
    gate,
    measure,
    parity_sample,
    profile_kernels,
)
from goldmine.inference.model import Model, RunMeta
from goldmine.inference.runtime import (
    MANIFEST_FILE,
    ONNX_DIR,
    ONNX_FILES,
    OnnxBackend,
    available_cores,
    weights_fingerprint,
)
from goldmine.registry import STRATEGIES

log = logging.getLogger(__name__)

FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)
PARITY_FILE = "parity.json"
REJECTED_FILE = "parity.rejected.json"
DEFAULT_MAX_LOSS = 0.5


@dataclass
class ExportResult:
    """What an export wrote and how it measured."""

    directory: Path  # <run>/onnx
    files: dict[str, Path]  # runtime -> graph
    report: dict[str, Any] = field(repr=False)  # the contents of parity.json
    passed: bool = True  # every exported runtime within max_loss
    forced: bool = False  # kept although the gate failed


def export_model(model_dir: str | Path, format: str = "onnx", quantize: str | None = None, *,
                 force: bool = False, max_loss: float = DEFAULT_MAX_LOSS, data: str | Path | None = None,
                 sample_size: int | None = None, threads: int | None = None,
                 int8_scheme: str = quantization.AUTO) -> ExportResult:
    """Export a run directory for fast serving and check it against the trained model.

    Args:
        format: only "onnx".
        quantize: "int8" also writes a dynamically quantised graph; a causal LM takes "int4", "int8" or
            "int4,int8" (block-wise weights, `goldmine.export.decoder`).
        force: keep an export the parity gate rejects (parity.json records that it was forced).
        max_loss: most points of the task metric (accuracy, micro-F1, entity F1 x 100) an exported runtime may
            lose against torch on the sample; negative rejects every export.
        data: labeled file to measure parity on (default: the run's own dev split, else its test split).
        sample_size: measure at most this many examples (a seeded sample); default: all of them. On sst2's
            872 dev examples one changed prediction is 0.11 points: a sample much smaller than the dev set
            cannot resolve a 0.5-point limit.
        threads: onnxruntime intra-op threads (default: the cores this process may use).
        int8_scheme: full | mixed-K | mixed (see `goldmine.export.quantize`), or auto: the fastest the gate
            accepts, trying full, mixed-1, mixed-2, ... mixed in turn; parity.json lists every scheme tried.

    Raises:
        ParityError: the gate rejected the export (and `force` was not set); `.report` holds the figures.
    """
    model_dir = Path(model_dir)
    if format not in FORMATS:
        raise ConfigError(f"format {format!r} is not supported; choose one of {', '.join(FORMATS)}")
    if RunMeta.load(model_dir).task == "causal_lm":  # a decoder: its own graphs (with their cache) and gate
        from goldmine.export.decoder import export_causal_lm

        return export_causal_lm(model_dir, quantize, force=force, max_loss=max_loss, data=data,
                                sample_size=sample_size, threads=threads)
    if quantize not in (None, *QUANTIZATIONS):
        raise ConfigError(f"quantize {quantize!r} is not supported; choose one of {', '.join(QUANTIZATIONS)}")
    quantization.check_scheme(int8_scheme)
    if sample_size is not None and sample_size < 1:
        raise ConfigError(f"sample size must be at least 1, got {sample_size}")

    strategy = RunMeta.load(model_dir).strategy
    if strategy in STRATEGIES and (reason := STRATEGIES.get(strategy).export_refusal):
        raise ConfigError(f"{model_dir}: cannot export a {strategy} run: {reason}")
    reference = Model.load(model_dir, runtime="torch")
    if reference.meta.members:
        raise ModelError(f"{model_dir} is an ensemble: export each member run; the ensemble then loads their exports")
    sample = parity_sample(model_dir, reference, data, sample_size)
    features = reference.task.encode(sample).features

    staging = model_dir / f"{ONNX_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        files = {"onnx": staging / ONNX_FILES["onnx"]}
        log.info("exporting %s to ONNX", model_dir)
        graph = onnx_export.export_onnx(reference.network, reference.task.tokenizer, files["onnx"])
        manifest: dict[str, Any] = {"format": "onnx", "files": {"onnx": ONNX_FILES["onnx"]}, **graph,
                                    "weights_sha256": weights_fingerprint(model_dir)}
        report, reference_logits = _parity_report(model_dir, reference, sample, features, files, threads)
        failures = gate(report, max_loss)
        if quantize == "int8":
            files["onnx-int8"] = staging / ONNX_FILES["onnx-int8"]
            manifest["files"]["onnx-int8"] = ONNX_FILES["onnx-int8"]
            import onnx

            attempts = []
            layers = len(quantization.ffn_down_projections(onnx.load(files["onnx"], load_external_data=False).graph))
            for scheme in quantization.schemes_to_try(int8_scheme, layers):  # fastest first; stop when one passes
                log.info("quantising to int8 (%s)", scheme)
                manifest["quantization"] = quantization.quantize_int8(files["onnx"], files["onnx-int8"], scheme)
                report["runtimes"]["onnx-int8"] = _measure_export(
                    "onnx-int8", files["onnx-int8"], reference, sample, features, reference_logits, threads)
                failures = gate(report, max_loss)
                figures = report["runtimes"]["onnx-int8"]
                attempts.append({"scheme": scheme, **{k: figures[k] for k in (
                    "metric", "metric_loss_points", "label_agreement", "max_abs_logit_diff", "examples_per_s",
                    "passed")}})
                if figures["passed"]:
                    break
            report["int8"] = {"scheme": manifest["quantization"]["scheme"], "attempts": attempts}
        manifest.update(exported_at=datetime.now(UTC).isoformat(timespec="seconds"), versions=_versions())
        report["forced"] = bool(failures) and force
        if failures and not force:
            rejected = model_dir / ONNX_DIR / REJECTED_FILE
            rejected.parent.mkdir(exist_ok=True)
            rejected.write_text(json.dumps(report, indent=2))
            only_int8 = report["runtimes"]["onnx"]["passed"] and "onnx-int8" in files
            raise ParityError(
                f"export rejected: {'; '.join(failures)} on {report['examples']} examples of {report['data']}; "
                f"the limit is {max_loss} points (max_loss). Nothing was installed in {model_dir / ONNX_DIR} "
                f"(figures in {rejected}). Pass --force to keep it anyway, or raise --max-loss"
                f"{', or export without --quantize' if only_int8 else ''}.", report)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        (staging / PARITY_FILE).write_text(json.dumps(report, indent=2))
        target = _install(staging, model_dir / ONNX_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if failures:
        log.warning("export kept although the parity gate failed (forced): %s", "; ".join(failures))
    return ExportResult(target, {k: target / v.name for k, v in files.items()}, report, not failures,
                        report["forced"])


def _parity_report(model_dir: Path, reference: Model, sample, features, files: dict[str, Path],
                   threads: int | None) -> tuple[dict[str, Any], dict[int, Any]]:
    """The parity report of torch and each exported graph on the sample, and torch's logits (to measure more)."""
    task = reference.task
    next(iter(reference.iter_logits(features[: reference.batch_size])))  # warm-up: time every runtime alike
    figures, reference_logits = measure(reference, sample)
    runtimes: dict[str, dict[str, Any]] = {"torch": figures}
    for name, path in files.items():
        runtimes[name] = _measure_export(name, path, reference, sample, features, reference_logits, threads)
    return {
        "model_dir": str(model_dir), "task": task.name, "metric": task.default_metric, "data": sample.path,
        "examples": len(sample), "one_example_points": round(100 / len(sample), 4), "runtimes": runtimes,
        "machine": {**cpu_features(), "cores": available_cores()},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "versions": _versions(),
    }, reference_logits


def _measure_export(name: str, path: Path, reference: Model, sample, features, reference_logits,
                    threads: int | None) -> dict[str, Any]:
    """One exported graph on the sample: task metric, speed, agreement with torch, size and kernels."""
    exported = Model(None, reference.task, reference.meta, reference.batch_size,
                     backend=OnnxBackend(path, name, threads))
    next(iter(exported.iter_logits(features[: reference.batch_size])))
    figures, logits = measure(exported, sample)
    figures.update(compare(reference.task, features, reference_logits, logits))
    figures.update(file=path.name, size_mb=round(path.stat().st_size / 1e6, 2))
    figures["kernels"] = profile_kernels(path, name, reference, features, threads)
    return figures


def _install(staging: Path, target: Path) -> Path:
    """Replace `target`'s graphs with the staged ones (an old rejected report goes too)."""
    if target.exists():
        old = target.with_name(f"{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(target)
    return target


def _versions() -> dict[str, str]:
    out = {}
    for package in ("goldmine", "torch", "transformers", "onnx", "onnxscript", "onnxruntime"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out
