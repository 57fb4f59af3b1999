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
