"""A decoder exported by `goldmine.export.decoder` run on onnxruntime, as a `DecoderRuntime` for `DecodeEngine`.

    from goldmine.export.decoder import export_decoder
    graph = export_decoder(resolve_decoder("smollm2"), "exports/smollm2", weights="int4")
    engine = DecodeEngine(OnnxDecoder(graph, threads=2), tokenizer, stop_ids=...)

The cache stays in the engine's layout, a (keys, values) pair of (B, kv_heads, L, head_dim) float32 torch tensors
per layer, so the engine merges and drops rows exactly as it does for torch. Crossing between torch and onnxruntime
costs no copy: `Tensor.numpy()` and `torch.from_numpy` share memory, and onnxruntime reads contiguous numpy inputs in
place. The graph concatenates each layer's past with the new position into a fresh present tensor, as transformers'
`DynamicCache` does in torch.

Threads are onnxruntime's own (`intra_op_num_threads`), fixed when the session is made; `DecodeEngine(threads=...)`
sets torch's, which then only samples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from goldmine.errors import ModelError

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values, (B, kv_heads, L, head_dim) each
MANIFEST = "decoder.json"  # written by goldmine.export.decoder next to the graphs


class OnnxDecoder:
    """An exported decoder graph on onnxruntime's CPU provider.

    Args:
        path: the `.onnx` file `export_decoder` returned (its `decoder.json` beside it).
        threads: onnxruntime intra-op threads (None: onnxruntime's default, one per core).
        profile_prefix: turn onnxruntime's profiler on, its trace written under this prefix when
            `session.end_profiling()` is called (bench/onnx_decoder.py's `profile` section).
    """

    name = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None, profile_prefix: str | None = None):
        import onnxruntime as ort

        path = Path(path)
        manifest = path.with_name(MANIFEST)
        if not path.is_file() or not manifest.is_file():
            raise ModelError(f"{path} is not an exported decoder (export it with goldmine.export.decoder)")
        info = json.loads(manifest.read_text())
        self.layers, self.kv_heads, self.head_dim = info["layers"], info["kv_heads"], info["head_dim"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.threads = threads
        self.past = [f"past.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]
        self.outputs = ["logits"] + [f"present.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]
        self.name = f"onnx-{path.stem.rsplit('.', 1)[-1]}"

    def _run(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: list[np.ndarray]
             ) -> tuple[torch.Tensor, KV]:
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                **dict(zip(self.past, past, strict=True))}
        logits, *present = self.session.run(self.outputs, feed)
        tensors = [torch.from_numpy(t) for t in present]
        return torch.from_numpy(logits), list(zip(tensors[0::2], tensors[1::2], strict=True))

    def prefill(self, prompt: list[int]) -> tuple[torch.Tensor, KV]:
        """The prompt against an empty cache: logits of its last position (1, V) and its cache."""
        count = len(prompt)
        empty = np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=np.float32)
        return self._run(np.array([prompt], dtype=np.int64), np.ones((1, count), dtype=np.int64),
                         np.arange(count, dtype=np.int64)[None], [empty] * (2 * self.layers))

    def step(self, last: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: KV
             ) -> tuple[torch.Tensor, KV]:
        """One token per row: `last` (B, 1), `mask` (B, L + 1), `positions` (B, 1); logits (B, V), cache grown by
        one position. Rows the engine dropped leave strided views: those are made contiguous here."""
        past = [t.contiguous().numpy() for layer in cache for t in layer]
        return self._run(last.numpy().astype(np.int64, copy=False), mask.numpy().astype(np.int64, copy=False),
                         positions.numpy().astype(np.int64, copy=False), past)
