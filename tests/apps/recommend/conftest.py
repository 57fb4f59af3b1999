"""A tiny random BERT whose word pieces cover the demo bookshop, and the demo's items and ratings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from goldmine.apps.recommend.data import read_interactions, read_items
from goldmine.apps.recommend.demo import NEW_BOOK, write_demo_data


@pytest.fixture(scope="session")
def bookshop(tmp_path_factory):
    files = write_demo_data(tmp_path_factory.mktemp("bookshop"))
    return read_items(files.items)[0], read_interactions(files.interactions)[0]


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, bookshop) -> Path:
    """A 2-layer, 32-wide BERT (random weights) with a vocabulary of the bookshop's words."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    items, _ = bookshop
    words = {w for item in [*items, NEW_BOOK] for w in re.findall(r"\w+|[^\w\s]", item.text().lower())}
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys([*sorted(words), *chars,
                                                                          *(f"##{c}" for c in chars)])]
    directory = tmp_path_factory.mktemp("tiny-encoder")
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(directory / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(directory)
    return directory


# ---- the app: the tiny encoder registered as `shop-encoder` of tenant acme, an app config, a built state -------

@pytest.fixture(scope="session")
def encoder_run(tmp_path_factory, tiny_encoder_dir) -> Path:
    """The tiny encoder saved as a goldmine retrieval model (what `goldmine app recommend save-encoder` writes)."""
    from goldmine.apps.recommend.api import save_base_encoder

    return save_base_encoder(tmp_path_factory.mktemp("encoder") / "run", str(tiny_encoder_dir))


@pytest.fixture
def encoder(db, settings, encoder_run):
    from goldmine.serving.registry import register

    return register(db, settings.registry_dir, "shop-encoder", encoder_run, "acme")


@pytest.fixture
def recommend_config(tmp_path):
    """`recommend_config(name, **fields)`: an app config file for acme naming `shop-encoder` (production), its state
    in `<tmp>/state`."""
    import yaml

    def write(name: str = "recommend.yaml", **fields) -> Path:
        config = {"app": "recommend", "tenant": "acme", "models": {"encoder": {"name": "shop-encoder"}},
                  "state_dir": "state", **fields}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture
def built_app(encoder, recommend_config, db, bookshop):
    """The bookshop built into the state of `recommend.yaml`."""
    from goldmine.apps.base import load_app_config
    from goldmine.apps.recommend import api

    items, interactions = bookshop
    return api.build(load_app_config(recommend_config(), "recommend"), db, items, interactions)
