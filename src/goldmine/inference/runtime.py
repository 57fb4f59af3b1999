"""Where forward passes run: torch on the trained network, or onnxruntime on an exported graph (fp32 or int8).

A backend turns one padded batch into logits; everything around it (tokenisation, length-sorted batching,
probabilities, decoding) is the same code for every runtime, so `predict`, `eval` and the server differ only
in the backend they were given. `goldmine export` writes the graphs into `<run>/onnx/` with a manifest that
names the weights they were exported from; a graph whose weights have changed since is never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from goldmine.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx", "onnx-int8")
AUTO = "auto"
ONNX_DIR = "onnx"
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
MANIFEST_FILE = "manifest.json"
FASTEST_FIRST = ("onnx-int8", "onnx")
LOGITS_OUTPUT = "logits"
# the pooled sentence embedding, for networks that have one (zero-shot labels per request, search); not
# "embedding", which torch.export gives the word-embedding lookup node (a duplicate name makes an invalid graph)
EMBEDDING_OUTPUT = "sentence_embedding"
# The files a run's torch network is loaded from; their hash ties an export to the weights it came from.
WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "adapter_config.json",
                "adapter_model.safetensors", "adapter_model.bin")


class Backend(Protocol):
    """Runs the network on one padded batch."""

    name: str  # torch | onnx | onnx-int8
    tensor_type: str  # what the tokenizer pads to: "pt" or "np"

    def logits(self, batch: Mapping[str, Any]) -> np.ndarray:
        """(B, C) or (B, T, C) float32 logits for a padded batch of model inputs."""

    def embeddings(self, batch: Mapping[str, Any]) -> np.ndarray:
        """(B, H) float32 pooled sentence embeddings, for networks that pool one (classification)."""

    def logits_and_embeddings(self, batch: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Both of the above from one forward pass."""

    @property
    def has_embeddings(self) -> bool:
        """The network pools a sentence embedding."""

    def describe(self) -> dict[str, Any]:
        """Runtime, execution provider and threads, for logs and reports."""


class TorchBackend:
    name = "torch"
    tensor_type = "pt"

    def __init__(self, network):
        self.network = network.eval()

    def logits(self, batch: Mapping[str, Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.network(**batch).logits.float().numpy()

    def embeddings(self, batch: Mapping[str, Any]) -> np.ndarray:
        import torch

        if not hasattr(self.network, "embed"):
            self._no_embedding()
        with torch.inference_mode():
            return self.network.embed(**batch).float().numpy()

    def logits_and_embeddings(self, batch: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        if not self.has_embeddings:
            self._no_embedding()
        with torch.inference_mode():
            logits, embeddings = self.network.logits_and_embeddings(**batch)
        return logits.float().numpy(), embeddings.float().numpy()

    @property
    def has_embeddings(self) -> bool:
        return hasattr(self.network, "logits_and_embeddings")

    def _no_embedding(self):
        raise ModelError(f"a {type(self.network).__name__} pools no sentence embedding (token models have none)")

    def describe(self) -> dict[str, Any]:
        import torch

        return {"runtime": self.name, "providers": ["torch-cpu"], "intra_op_threads": torch.get_num_threads()}


class OnnxBackend:
    """An onnxruntime session on the CPU execution provider, with intra-op threads = the cores we may use."""

    tensor_type = "np"

    def __init__(self, path: str | Path, name: str = "onnx", threads: int | None = None,
                 profile_dir: Path | None = None):
        import onnxruntime as ort

        self.name = name
        self.path = Path(path)
        self.threads = threads or available_cores()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1  # one graph, run node after node: parallelism lives inside the kernels
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if profile_dir is not None:
            options.enable_profiling = True
            options.profile_file_prefix = str(profile_dir / "ort-profile")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            raise ModelError(f"cannot load {self.path} with onnxruntime: {err}") from err
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _feed(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {name: np.asarray(batch[name], dtype=np.int64) for name in self.input_names}

    def logits(self, batch: Mapping[str, Any]) -> np.ndarray:
        return self.session.run([LOGITS_OUTPUT], self._feed(batch))[0]

    def embeddings(self, batch: Mapping[str, Any]) -> np.ndarray:
        if EMBEDDING_OUTPUT not in self.output_names:
            raise ModelError(f"{self.path} has no embedding output (a token model, or exported by an older goldmine: "
                             "run `goldmine export` again)")
        return self.session.run([EMBEDDING_OUTPUT], self._feed(batch))[0]

    def logits_and_embeddings(self, batch: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_embeddings:
            self.embeddings(batch)  # raises the error that says why
        logits, embeddings = self.session.run([LOGITS_OUTPUT, EMBEDDING_OUTPUT], self._feed(batch))
        return logits, embeddings

    @property
    def has_embeddings(self) -> bool:
        return EMBEDDING_OUTPUT in self.output_names

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "providers": self.session.get_providers(), "intra_op_threads": self.threads,
                "file": str(self.path)}


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and `taskset` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def weights_fingerprint(directory: Path) -> str:
    """sha256 over the files the torch network is loaded from (an adapter run: its adapter and config)."""
    digest = hashlib.sha256()
    for name in WEIGHT_FILES:
        path = directory / name
        if path.is_file():
            digest.update(name.encode() + b"\0")
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / ONNX_DIR / MANIFEST_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def onnx_path(directory: Path, runtime: str) -> Path:
    return directory / ONNX_DIR / ONNX_FILES[runtime]


def resolve_runtime(directory: str | Path, requested: str = AUTO) -> str:
    """The runtime to load: `requested`, or for `auto` the fastest current export present (int8 > onnx > torch).

    An export is current when its manifest's weight fingerprint matches the run's weights; `auto` skips a stale
    export (with a warning), an explicit request for one is an error.
    """
    directory = Path(directory)
    if requested not in (AUTO, *RUNTIMES):
        raise ConfigError(f"runtime {requested!r} is not one of {', '.join((AUTO, *RUNTIMES))}")
    if requested == "torch":
        return requested
    candidates = FASTEST_FIRST if requested == AUTO else (requested,)
    present = [r for r in candidates if onnx_path(directory, r).is_file()]
    if not present:
        if requested == AUTO:
            return "torch"
        flag = " --quantize int8" if requested == "onnx-int8" else ""
        raise ModelError(f"{directory} has no {requested} export ({ONNX_DIR}/{ONNX_FILES[requested]}); "
                         f"run `goldmine export {directory} --format onnx{flag}` first")
    manifest = read_manifest(directory) or {}
    if manifest.get("weights_sha256") != weights_fingerprint(directory):
        reason = (f"{directory / ONNX_DIR} was exported from other weights than {directory} holds now "
                  f"(retrained since?); run `goldmine export {directory} --format onnx` again")
        if requested != AUTO:
            raise ModelError(reason)
        log.warning("%s; using torch", reason)
        return "torch"
    return present[0]
