"""The ONNX decoder runtime on the tiny random Llama: an fp32 export decodes token for token what torch decodes,
through the same continuous-batching engine (rows joining, leaving, left-padded); so does a 4-bit export of a model
whose weights lie on a Q4_1 grid (as the bundled GGUF's do) when it computes in float32; the default 4-bit export
(int8 activations, 8-bit output projection) keeps the engine's batching exact and mostly agrees with torch."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from goldmine.errors import ConfigError, ModelError
from goldmine.export.decoder import export_decoder
from goldmine.inference.generation import DecodeEngine, SamplingParams, TorchDecoder
from goldmine.inference.onnx_decoder import OnnxDecoder

WORDS = ["hi", "how can i help", "where is my parcel it ships today", "you are kind", "great film", "awful",
         "hello you are kind how can i help", "where is my film"]


@pytest.fixture(scope="module")
def decoder(tiny_decoder_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_decoder_dir)
    network = AutoModelForCausalLM.from_pretrained(tiny_decoder_dir).eval()
    return network, tokenizer


def snap_to_q4_1(weight: torch.Tensor, block: int) -> torch.Tensor:
    """(out, in) weight -> the nearest Q4_1 weight: blocks of `block` along `in`, each min + step * (0..15)."""
    blocks = weight.reshape(weight.shape[0], -1, block)
    low, high = blocks.amin(-1, keepdim=True), blocks.amax(-1, keepdim=True)
    step = (high - low) / 15
    return (low + step * torch.round((blocks - low) / step)).reshape(weight.shape)


@pytest.fixture(scope="module")
def q4_decoder_dir(decoder, tmp_path_factory):
    """The tiny decoder with every projection snapped to Q4_1 blocks of 16 (the embedding, tied, stays float)."""
    network, tokenizer = decoder
    directory = tmp_path_factory.mktemp("tiny-llama-q4")
    snapped = AutoModelForCausalLM.from_config(network.config)
    snapped.load_state_dict(network.state_dict())
    with torch.no_grad():
        for module in snapped.model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(snap_to_q4_1(module.weight, 16))
    snapped.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def exported(tiny_decoder_dir, q4_decoder_dir, tmp_path_factory):
    """fp32 and default int4 graphs of the tiny decoder (blocks of 16: its hidden size is 32), and an int4 graph of
    its Q4_1-snapped copy computed in float32 with a float32 output projection (the one part not on a 4-bit grid)."""
    out, q4_out = tmp_path_factory.mktemp("decoder-onnx"), tmp_path_factory.mktemp("decoder-q4-onnx")
    return {"fp32": export_decoder(tiny_decoder_dir, out, weights="fp32"),
            "int4": export_decoder(tiny_decoder_dir, out, weights="int4", block_size=16),
            "q4-exact": export_decoder(q4_decoder_dir, q4_out, weights="int4", block_size=16, accuracy_level=0,
                                       output_bits=0)}


def prompts(tokenizer) -> list[list[int]]:
    return [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                          add_generation_prompt=True, return_dict=False) for text in WORDS]


def decode(runtime, tokenizer, ids: list[list[int]], max_batch: int, new: int = 16) -> list[list[int]]:
    engine = DecodeEngine(runtime, tokenizer, max_batch=max_batch, threads=1)
    try:
        return engine.generate(ids, SamplingParams(max_tokens=new))
    finally:
        engine.close()


def test_fp32_prefill_and_step_match_torch(decoder, exported):
    network, tokenizer = decoder
    ids = prompts(tokenizer)[2]
    onnx, torch_runtime = OnnxDecoder(exported["fp32"], threads=1), TorchDecoder(network)
    with torch.inference_mode():
        (want, want_cache), (got, got_cache) = torch_runtime.prefill(ids), onnx.prefill(ids)
        assert got.shape == want.shape == (1, network.config.vocab_size)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        assert [k.shape for k, _ in got_cache] == [k.shape for k, _ in want_cache]
        last, mask, positions = torch.tensor([[5]]), torch.ones(1, len(ids) + 1, dtype=torch.long), torch.tensor(
            [[len(ids)]])
        (want, want_cache), (got, got_cache) = (torch_runtime.step(last, mask, positions, want_cache),
                                                onnx.step(last, mask, positions, got_cache))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    for (k, v), (wk, wv) in zip(got_cache, want_cache, strict=True):
        assert k.shape == wk.shape == (1, 2, len(ids) + 1, 16)
        torch.testing.assert_close(v, wv, atol=1e-5, rtol=1e-4)


def test_fp32_engine_decodes_what_torch_decodes(decoder, exported):
    network, tokenizer = decoder
    ids = prompts(tokenizer)  # eight lengths, three rows at most: rows join, leave and are left-padded
    want = decode(network, tokenizer, ids, max_batch=3)
    assert decode(OnnxDecoder(exported["fp32"], threads=1), tokenizer, ids, max_batch=3) == want
    assert sum(len(r) for r in want) > 8 * 8  # the random model rambles: real replies were compared


def test_int4_of_q4_1_weights_decodes_what_torch_decodes(q4_decoder_dir, decoder, exported):
    _, tokenizer = decoder
    network = AutoModelForCausalLM.from_pretrained(q4_decoder_dir).eval()
    ids = prompts(tokenizer)
    want = decode(network, tokenizer, ids, max_batch=3)
    assert decode(OnnxDecoder(exported["q4-exact"], threads=1), tokenizer, ids, max_batch=3) == want


def test_int4_rows_decode_alone_what_they_decode_together_and_mostly_agree_with_torch(decoder, exported):
    network, tokenizer = decoder
    ids = prompts(tokenizer)
    runtime = OnnxDecoder(exported["int4"], threads=1)
    together = decode(runtime, tokenizer, ids, max_batch=4)
    assert together == [decode(runtime, tokenizer, [one], max_batch=1)[0] for one in ids]
    want = decode(network, tokenizer, ids, max_batch=4, new=1)
    assert sum(r[:1] == w for r, w in zip(together, want, strict=True)) >= 6  # first tokens (later ones compound)


def test_the_int4_graph_holds_4_bit_weights_for_every_projection_and_the_output(exported):
    import onnx

    graph = onnx.load(str(exported["int4"]), load_external_data=False).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("MatMulNBits") == 2 * 7 + 1  # q k v o gate up down per layer, and the tied output projection
    bits = [next(a.i for a in node.attribute if a.name == "bits")
            for node in graph.node if node.op_type == "MatMulNBits"]
    assert sorted(bits) == [4] * 14 + [8]
    assert exported["int4"].with_suffix(".onnx.data").stat().st_size < exported["fp32"].with_suffix(
        ".onnx.data").stat().st_size


def test_bad_arguments_name_themselves(tiny_decoder_dir, tmp_path):
    with pytest.raises(ConfigError, match="weights"):
        export_decoder(tiny_decoder_dir, tmp_path, weights="int3")
    with pytest.raises(ModelError, match="not an exported decoder"):
        OnnxDecoder(tmp_path / "missing.onnx")
