"""int8 graphs give the same logits on every x86 int8 kernel (see `goldmine.export.quantize`'s docstring).

onnxruntime picks its u8 x s8 GEMM kernel from the CPU: int32 sums with VNNI, saturating int16 pair sums on AVX2
and AVX-512BW. A test that only runs on the machine at hand cannot see the other kernels, so the AVX2 ones are run
here under `qemu-x86_64 -cpu Haswell` (Debian's qemu-user; CI installs it): a Haswell has AVX2 and no AVX-512, so
MLAS dispatches its AVX2 kernels there whatever the host has.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from goldmine.export import quantize as quantization

QEMU = shutil.which("qemu-x86_64")
needs_qemu = pytest.mark.skipif(
    QEMU is None and not os.environ.get("GOLDMINE_REQUIRE_SERVICES"),
    reason="qemu-user is not installed (apt-get install qemu-user): the AVX2 kernels cannot be emulated here",
)

RUN_GRAPH = textwrap.dedent("""
    import sys, numpy as np, onnxruntime as ort
    graph, inputs, outputs = sys.argv[1:4]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    feed = dict(np.load(inputs))
    np.save(outputs, session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0])
""")


def run_graph(graph: Path, feed: dict[str, np.ndarray], tmp_path: Path, emulate: str | None = None) -> np.ndarray:
    """The graph's first output for `feed`, computed natively or under qemu emulating the CPU `emulate`."""
    script, inputs, outputs = tmp_path / "run_graph.py", tmp_path / "inputs.npz", tmp_path / "outputs.npy"
    script.write_text(RUN_GRAPH)
    np.savez(inputs, **feed)
    command = [sys.executable, str(script), str(graph), str(inputs), str(outputs)]
    if emulate:
        if QEMU is None:
            pytest.fail("GOLDMINE_REQUIRE_SERVICES is set but qemu-x86_64 is missing")
        command = [QEMU, "-cpu", emulate, *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(outputs)


def quantized_weights(path: Path) -> dict[str, np.ndarray]:
    """The int8 weight initialisers of a quantised graph (what the integer MatMuls multiply activations by)."""
    graph = onnx.load(path).graph
    consumers = {name for node in graph.node if node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")
                 for name in node.input}
    return {t.name: numpy_helper.to_array(t) for t in graph.initializer
            if t.name in consumers and t.data_type == onnx.TensorProto.INT8}


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_int8_weights_leave_the_int16_pair_sums_room(exported, task):
    """The guarantee the 7-bit weights give: a pair of u8 x s8 products never exceeds int16."""
    weights = quantized_weights(exported(task) / "onnx" / "model.int8.onnx")
    assert len(weights) >= 12  # 2 layers x (Q, K, V, attention output, FFN in, FFN out) at least
    largest = max(int(np.abs(w).max()) for w in weights.values())
    assert largest <= quantization.WEIGHT_MAX
    assert largest > quantization.WEIGHT_MAX // 2  # the 7-bit range is used, not a narrower one by mistake
    assert 2 * 255 * largest <= quantization.INT16_MAX


def single_matmul(tmp_path: Path, reduce_range: bool) -> Path:
    """A (4, 64) x (64, 8) MatMul whose every weight is 1.0: int8 weights at the top of their range."""
    from onnx import TensorProto, helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight = numpy_helper.from_array(np.ones((64, 8), dtype=np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "one_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], [weight])
    source, target = tmp_path / "fp32.onnx", tmp_path / f"int8-{reduce_range}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), source)
    quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8, reduce_range=reduce_range)
    return target


@needs_qemu
def test_emulated_avx2_kernels_saturate_8_bit_weights_but_not_7_bit_ones(tmp_path):
    """Shows the emulation runs the saturating kernels (so the next test means something) and that 7 bits cure it.

    Activations of 1.0 quantise to 255 and weights of 1.0 to 127 (8 bits) or 64 (7 bits): each u8 x s8 pair sums
    to 64770 or 32640 in int16, so only the 8-bit graph saturates.
    """
    feed = {"x": np.ones((4, 64), dtype=np.float32)}
    exact = np.full((4, 8), 64.0, dtype=np.float32)
    eight_bits = run_graph(single_matmul(tmp_path, reduce_range=False), feed, tmp_path, emulate="Haswell")
    seven_bits = run_graph(single_matmul(tmp_path, reduce_range=True), feed, tmp_path, emulate="Haswell")
    assert np.abs(eight_bits - exact).max() > 10  # 32767 instead of 64770 per pair: about half the true sum
    np.testing.assert_allclose(seven_bits, exact, rtol=0, atol=1e-3)


@needs_qemu
@pytest.mark.parametrize("task", ["classification", "ner"])
def test_int8_logits_are_the_same_on_the_avx2_kernels(exported, task, tmp_path):
    """The exported int8 graph of a real run gives the same logits under AVX2 as on this machine's kernels."""
    from goldmine.inference.model import Model

    run = exported(task)
    model = Model.load(run, runtime="onnx-int8", threads=1)
    texts = ["where is my order?", "I lost my card in Tokyo, please block it", "Anna Schmidt flew to Paris"]
    enc = model.task.tokenizer(texts, padding=True, return_tensors="np")
    feed = {name: np.asarray(enc[name], dtype=np.int64) for name in model.backend.input_names}
    graph = run / "onnx" / "model.int8.onnx"
    here = run_graph(graph, feed, tmp_path)
    emulated = run_graph(graph, feed, tmp_path, emulate="Haswell")
    # integer GEMMs agree exactly; what may differ is the float rescaling around them (FMA vs mul + add)
    np.testing.assert_allclose(emulated, here, rtol=0, atol=1e-5)
