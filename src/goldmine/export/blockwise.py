"""Block-wise weight quantisation of an ONNX graph's MatMuls into onnxruntime's `MatMulNBits`, in the two formats
the bundled GGUF stores: Q4_1 (the projections) and Q8_0 (the embedding, tied to the output projection). A weight
that already lies on such a grid is stored without any loss.

Why not onnxruntime's own `MatMulNBitsQuantizer`: its asymmetric 4-bit blocks have an *integer* zero point, so a
block's minimum m is rounded to a multiple of its step d. Q4_1 blocks are d * q + m with m arbitrary, so that rounding
shifts every weight of a block by up to d / 2: measured on SmolLM2-135M's Q4_1 weights, 8-9% relative error per
matrix (the re-quantisation of an already quantised weight), and greedy replies that left torch's within the first
one or two tokens on 6 of 10 prompts. `MatMulNBits` also takes float zero points, which would be exact, but its CPU
kernels then fall back to dequantising the whole matrix each call (50x slower, measured).

So a 4-bit block is split into what `MatMulNBits` stores exactly and a remainder computed beside it:

    w = d * (q - 8) + o,   q in 0..15, o = m + 8 d (the block's offset)
    x @ W = MatMulNBits(x; q, d)  +  blocksum(x) @ O       blocksum(x): (..., K / block), O: (K / block, N)

`MatMulNBits` without zero points uses 8 as the zero point, so only q and d are stored (4.5 bits a weight with
float32 d, against Q4_1's 5); the offsets O are a float32 matrix 1 / block the size of W (1 more bit a weight).
The block sums of an input are computed once per input: onnxruntime merges the identical Reshape + ReduceSum of the
MatMuls that share it (q, k, v; gate, up).

8-bit blocks are symmetric, d = max |w| / 127 and q = round(w / d) stored with `MatMulNBits`' 8-bit zero point 128:
exactly Q8_0's rule, so the output projection tied to the Q8_0 embedding is exact too.

Weights not on such a grid (a fine-tuned model's float weights) get ordinary min/max (4-bit) or absmax (8-bit)
block quantisation, which is at least as accurate as the integer zero point's.
"""

from __future__ import annotations

import logging

import numpy as np

from goldmine.errors import ConfigError

log = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"


def q4_blocks(weight: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K, N) weight -> packed q (N, K / block, block / 2) uint8, steps d (N * K / block,) and offsets (K / block, N):
    weight = d * (q - 8) + offset, blocks along K."""
    k, n = weight.shape
    blocks = weight.T.reshape(n, k // block, block).astype(np.float32)  # (N, kb, block)
    low, high = blocks.min(-1), blocks.max(-1)
    step = (high - low) / 15
    safe = np.where(step > 0, step, 1)
    q = np.clip(np.rint((blocks - low[..., None]) / safe[..., None]), 0, 15).astype(np.uint8)
    packed = q[..., 0::2] | (q[..., 1::2] << 4)  # element 2j in the low nibble of byte j
    offsets = low + 8 * step
    return packed, step.reshape(-1).astype(np.float32), np.ascontiguousarray(offsets.T, dtype=np.float32)


def q8_blocks(weight: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) weight -> q (N, K / block, block) uint8 (zero point 128) and steps (N * K / block,): Q8_0's rule."""
    k, n = weight.shape
    blocks = weight.T.reshape(n, k // block, block).astype(np.float32)
    step = np.abs(blocks).max(-1) / 127
    safe = np.where(step > 0, step, 1)
    q = (np.clip(np.rint(blocks / safe[..., None]), -127, 127) + 128).astype(np.uint8)
    return q, step.reshape(-1).astype(np.float32)


def quantize_matmuls(model, block: int = 32, accuracy_level: int = 4, eight_bit: frozenset[str] = frozenset(),
                     skip: frozenset[str] = frozenset(), keep_rank: int = 0) -> dict:
    """Replace, in place, every MatMul of `model` (an onnx ModelProto) whose weight is a constant (K, N) initializer:
    4 bits (Q4_1 form) by default, 8 bits (Q8_0 form) for the node names in `eight_bit`, none for those in `skip`.
    `accuracy_level` is the 4-bit MatMuls' compute type (4: int8 activations in blocks, 0: float32); 8-bit ones
    always compute in int8 (level 4): onnxruntime 1.32 has no float32 kernel for 8-bit weights and dequantises the
    whole matrix each call instead (the 49152 x 576 output projection: 5.6 instead of 53 tokens/s). A weight with a
    side of at most `keep_rank` (an unmerged LoRA adapter's A or B) stays float32. Returns counts."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*graph.value_info, *graph.input]
             if v.type.tensor_type.HasField("shape")}
    counts = {"4bit": 0, "8bit": 0, "kept": 0}
    nodes, dropped = [], set()
    for node in graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or node.name in skip:
            nodes.append(node)
            continue
        k, n = weight.dims
        if min(k, n) <= keep_rank:  # a LoRA adapter's A (K x r) or B (r x N): tiny, and its precision is the update
            counts["kept"] += 1
            nodes.append(node)
            continue
        if k % block:
            raise ConfigError(f"block_size: {block} does not divide the input size {k} of {node.name}")
        rank = ranks.get(node.input[0])
        bits = 8 if node.name in eight_bit else 4
        if bits == 4 and rank is None:  # the block sums need the input's rank; keep what cannot be split
            log.info("keeping %s in float32: the rank of its input is unknown", node.name)
            counts["kept"] += 1
            nodes.append(node)
            continue
        array = numpy_helper.to_array(weight)
        name = node.name or node.output[0]
        attrs = {"K": k, "N": n, "bits": bits, "block_size": block}
        level = 4 if bits == 8 else accuracy_level
        if level:
            attrs["accuracy_level"] = level
        if bits == 8:
            q, step = q8_blocks(array, block)
            graph.initializer.extend([numpy_helper.from_array(q, f"{name}.q8"),
                                      numpy_helper.from_array(step, f"{name}.scales")])
            nodes.append(helper.make_node("MatMulNBits", [node.input[0], f"{name}.q8", f"{name}.scales"],
                                          list(node.output), name=name, domain=MS_DOMAIN, **attrs))
        else:
            packed, step, offsets = q4_blocks(array, block)
            graph.initializer.extend([
                numpy_helper.from_array(packed, f"{name}.q4"), numpy_helper.from_array(step, f"{name}.scales"),
                numpy_helper.from_array(offsets, f"{name}.offsets"),
                numpy_helper.from_array(np.array([0] * (rank - 1) + [k // block, block], np.int64), f"{name}.blocks"),
                numpy_helper.from_array(np.array([-1], np.int64), f"{name}.last")])
            x = node.input[0]
            nodes += [
                helper.make_node("MatMulNBits", [x, f"{name}.q4", f"{name}.scales"], [f"{name}.grid"],
                                 name=f"{name}.grid", domain=MS_DOMAIN, **attrs),
                helper.make_node("Reshape", [x, f"{name}.blocks"], [f"{name}.x_blocks"], name=f"{name}.reshape"),
                helper.make_node("ReduceSum", [f"{name}.x_blocks", f"{name}.last"], [f"{name}.x_sums"],
                                 name=f"{name}.block_sums", keepdims=0),
                helper.make_node("MatMul", [f"{name}.x_sums", f"{name}.offsets"], [f"{name}.offset"],
                                 name=f"{name}.offset"),
                helper.make_node("Add", [f"{name}.grid", f"{name}.offset"], list(node.output), name=f"{name}.add"),
            ]
        dropped.add(weight.name)
        counts[f"{bits}bit"] += 1
    still_used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name not in dropped or init.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return counts
