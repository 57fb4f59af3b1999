"""Trace a trained network into an ONNX graph with dynamic batch and sequence axes.

torch's exporter (`torch.onnx.export(..., dynamo=True)`: torch.export, then onnxscript) traces the network
on a small padded batch. The batch has two rows of different lengths, so the graph is traced with a real
padding mask and neither axis is specialised to 1. Attention is traced in its eager form (matmul, mask,
softmax): the same arithmetic as SDPA, in a graph that onnxruntime fuses and quantises well.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch

from goldmine.errors import ModelError
from goldmine.inference.batching import MODEL_INPUTS
from goldmine.inference.runtime import EMBEDDING_OUTPUT, LOGITS_OUTPUT

log = logging.getLogger(__name__)

# Two texts of different lengths: the traced batch holds padding (sequence and batch axes both > 1).
EXAMPLE_TEXTS = (["an example to trace the graph", "a longer example, so that the batch needs padding here"],
                 ["first of a pair", "and the second text of the pair"])
EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir")
PROTOBUF_LIMIT = 2 * 1024**3  # graphs above 2 GiB must keep their weights in a side file


class GraphSignature(torch.nn.Module):
    """Positional inputs in, logits out (and the pooled embedding, for a network that pools one): the signature
    the ONNX graph gets. Both outputs come from one pass, so asking for the logits alone costs nothing more."""

    def __init__(self, network: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.network = network
        self.input_names = input_names
        self.with_embedding = hasattr(network, "logits_and_embeddings")

    @property
    def output_names(self) -> list[str]:
        return [LOGITS_OUTPUT, EMBEDDING_OUTPUT] if self.with_embedding else [LOGITS_OUTPUT]

    def forward(self, *inputs: torch.Tensor):
        named = dict(zip(self.input_names, inputs, strict=True))
        if self.with_embedding:
            return self.network.logits_and_embeddings(**named)
        return self.network(**named).logits


def model_inputs(tokenizer) -> list[str]:
    """The inputs the tokenizer produces and the graph takes: input_ids, attention_mask[, token_type_ids]."""
    return [name for name in MODEL_INPUTS if name in tokenizer.model_input_names]


@contextlib.contextmanager
def eager_attention(network: torch.nn.Module):
    """Switch attention to its eager implementation for the duration of the export, then back."""
    config = getattr(network, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    switch = previous not in (None, "eager") and hasattr(network, "set_attn_implementation")
    if switch:
        try:
            network.set_attn_implementation("eager")
        except (ValueError, ImportError) as err:  # a model without an eager path: export what it has
            log.info("keeping %s attention for export: %s", previous, err)
            switch = False
    try:
        yield
    finally:
        if switch:
            network.set_attn_implementation(previous)


def export_onnx(network: torch.nn.Module, tokenizer, path: Path) -> dict:
    """Write `network` as an ONNX graph to `path`; returns what the manifest records about it."""
    input_names = model_inputs(tokenizer)
    example = tokenizer(*EXAMPLE_TEXTS, padding=True, return_tensors="pt")
    args = tuple(example[name] for name in input_names)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = tuple({0: batch, 1: sequence} for _ in input_names)
    big = sum(p.numel() * p.element_size() for p in network.parameters()) > PROTOBUF_LIMIT * 0.9
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = GraphSignature(network.eval(), input_names).eval()
    with eager_attention(network), warnings.catch_warnings(), quiet_logs(*EXPORTER_LOGGERS):
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing notes are not the user's concern
        try:
            program = torch.onnx.export(
                wrapper, args, str(path), input_names=input_names, output_names=wrapper.output_names,
                dynamic_shapes=(dynamic,), dynamo=True, optimize=True, external_data=big, verbose=False,
            )
        except Exception as err:  # the exporter raises many types; all mean "this network did not export"
            raise ModelError(f"ONNX export of {type(network).__name__} failed: {err}") from err
    opset = next((o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"inputs": input_names, "outputs": wrapper.output_names, "dynamic_axes": ["batch", "sequence"],
            "opset": opset, "exporter": "torch.onnx.export(dynamo=True)", "external_data": big}


@contextlib.contextmanager
def quiet_logs(*names: str):
    """Raise the given loggers ("" is the root logger) to ERROR for the duration: the exporter and quantiser
    log every step, and missing optional packages, at INFO/WARNING, which is not the user's concern."""
    loggers = [logging.getLogger(name or None) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
