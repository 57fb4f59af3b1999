"""int8 dynamic quantisation with onnxruntime, in schemes the exporter tries fastest first.

Dynamic quantisation stores weights as signed int8 and quantises each activation to uint8 per tensor at run
time, from the batch's own range (no calibration data). MatMul and Gemm become MatMulInteger (+ scale), which
onnxruntime fuses into its int8 GEMM kernels.

    full   every MatMul/Gemm with a weight matrix in int8, one scale per output channel: the fastest.
    mixed  the FFN down-projections (the MatMul right after each GELU) stay fp32; the rest int8, one scale
           per weight matrix. Post-GELU activations are long-tailed, so one uint8 scale per tensor leaves
           most of them a handful of levels: on the sst2 MiniLM, `full` agreed with torch on 97.9% of dev
           labels (-0.69 points of accuracy), `mixed` on 99.4% (-0.11), at ~0.8x `full`'s speed; per-channel
           weights gained nothing once those layers were fp32 (99.1%, -0.46).

    mixed-K as `full` (per-channel weights), but the first K down-projections (from the input side) stay fp32.
           The error a quantised layer adds is carried and amplified by every layer after it, so the early
           layers matter most (an earlier sst2 MiniLM, 1 thread: fp32 0.9094; layers 0-2 kept fp32 0.9048 at
           265 texts/s, `mixed` 0.9060 at 218, `full` 0.9002 at 311). With per-tensor weights instead, as
           `mixed` has, the partial schemes lost more than `full` itself (sst2: mixed-1 -2.06 points, full -0.57).

`goldmine export --quantize int8` (`--int8-scheme auto`) tries `full`, then `mixed-1`, `mixed-2`, ... up to
`mixed`, and keeps the first the parity gate accepts: the fastest int8 graph within the allowed loss. parity.json
lists every attempt (`--int8-scheme` picks one).

Weights use 7 bits (-64..64, onnxruntime's `reduce_range`) in both schemes, so that an int8 graph gives the same
logits on every x86 CPU. onnxruntime's MLAS picks its u8 x s8 GEMM kernel from the CPU it runs on: with AVX-512
VNNI (or AVX-VNNI) products are summed in int32, but on AVX2 and AVX-512BW without VNNI `vpmaddubsw` adds each
pair of u8 x s8 products into a *saturating int16*, and 2 x 255 x 127 = 64770 overflows it. Saturated sums are
silently wrong: the tiny test BERT exported with 8-bit weights agreed with torch on 71% of labels (max |logit
error| 0.052) under the AVX2 kernels and on 100% (0.0016) under VNNI, and a trained one 93.9% against 99.8%.
With 7-bit weights a pair sums to at most 2 x 255 x 64 = 32640 < 32767: nothing saturates, both kernel families
compute the same integers (the same logits to the last bit in that check, AVX2 emulated with
`qemu-x86_64 -cpu Haswell`), and a parity gate passed on one machine holds on any other. The price is one bit of
weight precision (max |logit error| 0.0016 -> 0.0020 on that tiny model under VNNI); the speed is unchanged, as
the same kernels run. `tests/export/test_portability.py` checks both the bound and the AVX2 kernels.
"""

from __future__ import annotations

from pathlib import Path

from goldmine.errors import ConfigError, ModelError
from goldmine.export.onnx import quiet_logs

AUTO = "auto"
SCHEMES = {  # fastest first: the order `auto` tries them in
    "full": {"method": "dynamic", "weights": "int8 (7-bit range), symmetric, per output channel",
             "activations": "uint8, per tensor, from each batch's range", "ops": ["MatMul", "Gemm"],
             "kept_fp32": "none"},
    "mixed": {"method": "dynamic", "weights": "int8 (7-bit range), symmetric, per tensor",
              "activations": "uint8, per tensor, from each batch's range", "ops": ["MatMul", "Gemm"],
              "kept_fp32": "FFN down-projections (the MatMul after each GELU)"},
}
WEIGHT_MAX = 64  # reduce_range: weights in -64..64 (onnxruntime's 7-bit symmetric range), see the module docstring
INT16_MAX = 32767  # what a u8 x s8 pair sum must not exceed on the AVX2 / AVX-512BW kernels
GELU_OPS = {"Gelu", "FastGelu", "BiasGelu", "Erf"}  # Erf: GELU written out as 0.5 * x * (1 + erf(x / sqrt 2))


PARTIAL = "mixed-"  # mixed-K: the first K down-projections fp32


def check_scheme(requested: str) -> None:
    """Refuse a scheme name that is none of auto, full, mixed, mixed-K (K >= 1)."""
    if requested in (AUTO, *SCHEMES):
        return
    k = requested.removeprefix(PARTIAL)
    if requested.startswith(PARTIAL) and k.isdigit() and int(k) >= 1:
        return
    raise ConfigError(f"int8 scheme {requested!r} is not one of {AUTO}, full, mixed-K (K >= 1 layers kept fp32), "
                      "mixed")


def schemes_to_try(requested: str, layers: int) -> list[str]:
    """`auto` -> full, mixed-1 ... mixed-(layers - 1), mixed: fastest first; a named scheme -> just it.

    `layers` is the number of FFN down-projections of the graph (`ffn_down_projections`)."""
    check_scheme(requested)
    if requested != AUTO:
        return [requested]
    return ["full", *(f"{PARTIAL}{k}" for k in range(1, layers)), "mixed"]


def scheme_settings(scheme: str) -> dict:
    """What the manifest records of a scheme: its method, weights, activations, ops and the layers kept fp32."""
    if not scheme.startswith(PARTIAL):
        return dict(SCHEMES[scheme])
    k = int(scheme.removeprefix(PARTIAL))
    return {**SCHEMES["full"], "kept_fp32": f"the first {k} FFN down-projections (the MatMul after each GELU)"}


def kept_fp32(scheme: str, down_projections: list[str]) -> list[str]:
    """The MatMul nodes a scheme leaves in fp32, from the graph's down-projections in execution order."""
    if scheme == "full":
        return []
    if scheme == "mixed":
        return down_projections
    return down_projections[: int(scheme.removeprefix(PARTIAL))]


def ffn_down_projections(graph) -> list[str]:
    """Names of the MatMul nodes fed (within a few elementwise steps) by a GELU: the FFN's second matrix."""
    producer = {out: node for node in graph.node for out in node.output}

    def after_gelu(tensor: str, depth: int = 4) -> bool:
        node = producer.get(tensor)
        if node is None or depth == 0:
            return False
        if node.op_type in GELU_OPS:
            return True
        if node.op_type not in ("Mul", "Add", "Div", "Cast"):
            return False
        return any(after_gelu(t, depth - 1) for t in node.input)

    # graph.node is topologically sorted (ONNX requires it): the first is layer 0's
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and after_gelu(n.input[0])]


def quantize_int8(source: Path, target: Path, scheme: str = "full") -> dict:
    """Write the int8 version of the fp32 graph `source` to `target`; returns what the manifest records."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    check_scheme(scheme)
    settings = scheme_settings(scheme)
    excluded = kept_fp32(scheme, ffn_down_projections(onnx.load(source).graph))
    try:
        with quiet_logs(""):  # onnxruntime's quantiser logs each tensor on the root logger
            quantize_dynamic(source, target, per_channel=scheme != "mixed", weight_type=QuantType.QInt8,
                             reduce_range=True, op_types_to_quantize=settings["ops"], nodes_to_exclude=excluded)
    except Exception as err:  # onnxruntime's quantiser raises plain RuntimeErrors/ValueErrors
        raise ModelError(f"int8 quantisation of {source} failed: {err}") from err
    return {"scheme": scheme, **settings, "nodes_kept_fp32": len(excluded)}
