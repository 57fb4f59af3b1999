"""Block-wise quantisation into MatMulNBits: weights already on a Q4_1 or Q8_0 grid are stored without loss (the
blocks' float offsets are kept, not rounded to an integer zero point), and onnxruntime computes with them exactly
when its compute type is float32."""

from __future__ import annotations

import numpy as np
import pytest

from goldmine.errors import ConfigError
from goldmine.export.blockwise import q4_blocks, q8_blocks, quantize_matmuls

K, N, BLOCK = 64, 24, 32


def q4_1_weight(rng) -> np.ndarray:
    """(K, N): blocks of 32 along K, each m + d * q with q spanning 0..15 (as llama.cpp's Q4_1 writes them)."""
    q = rng.integers(0, 16, (N, K // BLOCK, BLOCK))
    q[..., 0], q[..., 1] = 0, 15
    step, low = rng.uniform(1e-3, 1e-2, (N, K // BLOCK, 1)), rng.uniform(-0.08, 0.0, (N, K // BLOCK, 1))
    return (low + step * q).reshape(N, K).T.astype(np.float32)


def q8_0_weight(rng) -> np.ndarray:
    q = rng.integers(-127, 128, (N, K // BLOCK, BLOCK))
    q[..., 0] = 127
    return (rng.uniform(1e-3, 1e-2, (N, K // BLOCK, 1)) * q).reshape(N, K).T.astype(np.float32)


def test_q4_blocks_hold_a_q4_1_weight_exactly():
    weight = q4_1_weight(np.random.default_rng(0))
    packed, step, offsets = q4_blocks(weight, BLOCK)
    q = np.stack([packed & 15, packed >> 4], axis=-1).reshape(N, K // BLOCK, BLOCK).astype(np.float32)
    restored = (step.reshape(N, -1, 1) * (q - 8) + offsets.T[..., None]).reshape(N, K).T
    np.testing.assert_allclose(restored, weight, rtol=1e-6, atol=1e-7)  # float rounding only


def test_q8_blocks_hold_a_q8_0_weight_exactly():
    weight = q8_0_weight(np.random.default_rng(1))
    q, step = q8_blocks(weight, BLOCK)
    restored = (step.reshape(N, -1, 1) * (q.astype(np.float32) - 128)).reshape(N, K).T
    np.testing.assert_allclose(restored, weight, rtol=1e-6, atol=1e-7)  # float rounding only


def matmul_model(weight: np.ndarray):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", N])],
                              [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run(model, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize(("bits", "level", "tolerance"), [(4, 0, 1e-6), (4, 4, 2e-2), (8, 4, 2e-2)])
def test_onnxruntime_computes_the_quantised_matmul(bits, level, tolerance):
    rng = np.random.default_rng(2)
    weight = q4_1_weight(rng) if bits == 4 else q8_0_weight(rng)
    model = matmul_model(weight)
    counts = quantize_matmuls(model, BLOCK, level, eight_bit=frozenset({"proj"}) if bits == 8 else frozenset())
    assert counts == {"4bit": int(bits == 4), "8bit": int(bits == 8), "kept": 0}
    assert not any(init.name == "w" for init in model.graph.initializer)  # the float weight is gone
    x = rng.standard_normal((2, 3, K)).astype(np.float32)
    want = x @ weight
    assert np.linalg.norm(run(model, x) - want) / np.linalg.norm(want) < tolerance  # level 4: int8 activations


def test_a_block_size_that_does_not_divide_the_input_is_named():
    with pytest.raises(ConfigError, match="block_size: 48"):
        quantize_matmuls(matmul_model(np.zeros((K, N), np.float32)), 48)
