"""Shared fixtures: a tiny randomly initialised BERT (built here, in seconds) and the demo data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models gain nothing from threads; one per test process keeps a shared 2-core machine responsive."""
    import torch

    torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _vocab(words: set[str]) -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for w in words for c in w})
    pieces = sorted(words) + chars + [f"##{c}" for c in chars]
    return specials + list(dict.fromkeys(pieces))


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory):
    from goldmine.demo.datasets import write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, demo_files) -> Path:
    """A 2-layer, 32-wide BERT with a word-piece vocabulary from the demo data. Random weights."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from goldmine.data.readers import read_file

    words: set[str] = set()
    for ex in read_file(demo_files.intents).examples:
        words.update(ex.text.lower().replace(",", " , ").replace(".", " . ").replace("?", " ? ").split())
    for ex in read_file(demo_files.ner).examples:
        words.update(w.lower() for w in ex.tokens)
    directory = tmp_path_factory.mktemp("tiny-bert")
    (directory / "vocab.txt").write_text("\n".join(_vocab(words)) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(directory / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    BertModel(config).save_pretrained(directory)
    return directory


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> {% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")
CHAT_WORDS = ["system", "user", "assistant", "you", "are", "kind", "hi", "hello", "how", "can", "i", "help", "where",
              "is", "my", "parcel", "it", "ships", "today", "positive", "negative", "great", "awful", "film"]


@pytest.fixture(scope="session")
def tiny_decoder_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide Llama with a word-level tokenizer and a ChatML-like chat template. Random weights."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", *CHAT_WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                        eos_token="<|im_end|>", additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHATML
    directory = tmp_path_factory.mktemp("tiny-llama")
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=0, eos_token_id=3, bos_token_id=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


REVIEW_CHATS = [("great film", "positive"), ("awful film", "negative"), ("great", "positive"), ("awful", "negative")]


@pytest.fixture(scope="session")
def tiny_chat_run(tmp_path_factory, tiny_decoder_dir):
    """`tiny_chat_run(trained)`: a causal LM run directory of the tiny decoder, made once per session.
    trained=True: 40 steps on review -> sentiment chats (it answers "positive"/"negative" and stops); False: one
    step at a negligible learning rate (random weights that ramble until max_tokens)."""
    import json

    import goldmine

    def get(trained: bool) -> Path:
        out = tmp_path_factory.getbasetemp() / f"goldmine-chat-run-{'trained' if trained else 'raw'}"
        if not (out / "metrics.json").is_file():
            chats = out.parent / "review-chats.jsonl"
            chats.write_text("".join(json.dumps({"prompt": a, "response": b}) + "\n" for a, b in REVIEW_CHATS * 6))
            goldmine.train(None, **{"task": "causal_lm", "data.train": chats, "data.test": chats,
                                    "model.name": str(tiny_decoder_dir), "output_dir": out, "model.max_length": 32,
                                    "training.max_steps": 40 if trained else 1,
                                    "training.learning_rate": 3e-2 if trained else 1e-9, "training.batch_size": 8,
                                    "training.eval_strategy": "none"})
        return out

    return get


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, demo_files, tiny_model_dir):
    """`tiny_run(task)`: a run directory from a 2-step `goldmine.train` on the tiny model, trained once per session."""
    import goldmine

    def get(task: str) -> Path:
        """task: classification | multilabel | ner, or "pair" (classification of demo message pairs)."""
        out = tmp_path_factory.getbasetemp() / f"goldmine-run-{task}"
        if not (out / "metrics.json").is_file():
            if task == "pair":
                train = pair_file(demo_files.intents, out.parent / "pairs.jsonl")
            else:
                train = demo_files.ner if task == "ner" else demo_files.intents
            goldmine.train(None, **{
                "task": "classification" if task == "pair" else task,
                "data.train": train,
                "model.name": str(tiny_model_dir),
                "output_dir": out,
                "training.max_steps": 2,
                "training.batch_size": 8,
                "training.eval_strategy": "none",
                "training.linear_probe": False,
                # a random head: the export tests' int8 tolerances were set for its near-flat logits (LP-FT has
                # tests of its own in tests/training/test_head_init.py)
                "training.head_init": "random",
            })
        return out

    return get


@pytest.fixture(scope="session")
def demo_pairs(tmp_path_factory, demo_files) -> Path:
    """`pair_file` of the demo intents: same/different-intent message pairs."""
    return pair_file(demo_files.intents, tmp_path_factory.mktemp("pairs") / "pairs.jsonl")


def pair_file(intents: Path, target: Path) -> Path:
    """Pairs of demo messages labelled `same` / `different` intent: a small text-pair classification file."""
    import json
    import random

    from goldmine.data.readers import read_file

    examples = read_file(intents).examples
    rng = random.Random(0)
    rows = []
    for ex in examples[:120]:
        other = rng.choice(examples)
        rows.append({"text": ex.text, "text_b": other.text,
                     "label": "same" if other.labels == ex.labels else "different"})
        same = rng.choice([o for o in examples if o.labels == ex.labels])
        rows.append({"text": ex.text, "text_b": same.text, "label": "same"})
    target.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return target


def shared_data(name: str) -> Path:
    """A benchmark data folder from ../shared/data; tests that need it skip when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="session")
def case_types_of_text():
    """An oracle for the case types of raw text, written independently of the product's encoder: each word is
    the span from its first sub-token's start to its last's end, and its type is `word_case` of that span.
    Called as `case_types_of_text(task, text, word_ids, offsets)`."""
    from goldmine.tasks.token_classification import word_case

    def types(task, text: str, word_ids: list[int | None], offsets) -> list[int]:
        spans: dict[int, tuple[int, int]] = {}
        for wid, (start, end) in zip(word_ids, offsets, strict=True):
            if wid is not None:
                spans[wid] = (spans.get(wid, (start, end))[0], end)
        return task.case_types(word_ids, {wid: word_case(text[a:b]) for wid, (a, b) in spans.items()})

    return types
