"""int8 dynamic quantisation with onnxruntime: int8 weights per output channel, activations quantised on the fly.

Weights are stored as signed int8 with one scale per output channel (per-channel keeps the many small
rows of an attention projection from sharing one coarse scale); activations are quantised to uint8 per
tensor at run time, from each batch's own range, so no calibration data is needed. MatMul and Gemm
become MatMulInteger (+ scale), which onnxruntime fuses into its int8 GEMM kernels.
"""

from __future__ import annotations

from pathlib import Path

from goldmine.errors import ModelError
from goldmine.export.onnx import quiet_logs

SCHEME = {"method": "dynamic", "weights": "int8, symmetric, per output channel",
          "activations": "uint8, per tensor, from each batch's range", "ops": ["MatMul", "Gemm"]}


def quantize_int8(source: Path, target: Path) -> dict:
    """Write the int8 version of the fp32 graph `source` to `target`; returns what the manifest records."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with quiet_logs(""):  # onnxruntime's quantiser logs each tensor on the root logger
            quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8,
                             op_types_to_quantize=SCHEME["ops"])
    except Exception as err:  # onnxruntime's quantiser raises plain RuntimeErrors/ValueErrors
        raise ModelError(f"int8 quantisation of {source} failed: {err}") from err
    return dict(SCHEME)
