"""Teach the item encoder what users like together: contrastive fine-tuning on co-liked item pairs.

A text encoder places items by what their texts say; users group them by taste (the same people like "Heat" and
"Ronin", not every crime film). Two items that one user liked close to each other in time make a pair, and the
encoder is fine-tuned so that each item's partner ranks first among every other item of its batch (in-batch
negatives, MultipleNegativesRankingLoss): one tower for items, a user being the mean of their liked items' vectors.
What the encoder learns from pairs carries over to items without any interaction, because it only ever reads text:
that is what makes a new item recommendable from its text alone.

Training is goldmine's own retrieval recipe (`goldmine.training.retrieval`, sentence-transformers underneath): the
pairs are written as a pair file (`<output>/pairs.jsonl`, labeled "1"), a share is split off as dev (MRR@10 picks
the best checkpoint), and the result is a goldmine retrieval model that `Index`, export and serving read as any
other.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable
from pathlib import Path

from goldmine.apps.recommend.config import FinetuneConfig
from goldmine.apps.recommend.data import Interaction, Item, is_like, time_ordered
from goldmine.errors import DataError, DataIssue

log = logging.getLogger(__name__)
PAIRS_FILE = "pairs.jsonl"
MATCH = "1"


def co_liked_pairs(interactions: Iterable[Interaction], like_threshold: float, config: FinetuneConfig,
                   known: set[str] | None = None) -> list[tuple[str, str]]:
    """(item id, item id) pairs that one user liked within `config.window` likes of each other, at most
    `pairs_per_user` per user and `max_pairs` in all (a seeded draw), each unordered pair once, in a seeded random
    order. Items outside `known` are left out."""
    rng = random.Random(config.seed)
    chosen: list[tuple[str, str]] = []
    taken: set[tuple[str, str]] = set()
    for _user, rows in sorted(time_ordered(interactions).items()):  # user order: reproducible
        liked = [i.item_id for i in rows if is_like(i, like_threshold) and (known is None or i.item_id in known)]
        liked = list(dict.fromkeys(liked))  # a re-rated item counts once, at its first like
        candidates = sorted({tuple(sorted((a, b))) for n, a in enumerate(liked)
                             for b in liked[n + 1: n + 1 + config.window]})
        rng.shuffle(candidates)
        kept = 0
        for pair in candidates:
            if kept == config.pairs_per_user:
                break
            if pair not in taken:
                taken.add(pair)
                chosen.append(pair if rng.random() < 0.5 else (pair[1], pair[0]))
                kept += 1
    rng.shuffle(chosen)
    return chosen[: config.max_pairs]


def finetune_encoder(items: list[Item], interactions: Iterable[Interaction], output_dir: str | Path,
                     config: FinetuneConfig, like_threshold: float = 4.0, base_model: str = "bundled",
                     callbacks: list | None = None) -> Path:
    """Fine-tune `base_model` on co-liked pairs of `items` and save it as a goldmine retrieval model in
    `output_dir`; returns the directory. Raises a `DataError` when the interactions give no pair."""
    from goldmine.config import load_config
    from goldmine.training.retrieval import train_retrieval

    out = Path(output_dir)
    text = {item.id: item.text() for item in items}
    pairs = co_liked_pairs(interactions, like_threshold, config, known=set(text))
    if len(pairs) < 2:
        raise DataError([DataIssue("interactions", 0, f"{len(pairs)} co-liked pair(s): fine-tuning needs users "
                                                     "who liked at least two catalog items each; build with the "
                                                     "pretrained encoder instead (Recommender.build)")],
                        header="nothing to fine-tune on")
    out.mkdir(parents=True, exist_ok=True)
    data = out / PAIRS_FILE
    with data.open("w", encoding="utf-8") as fh:
        for a, b in pairs:
            fh.write(json.dumps({"text": text[a], "text_b": text[b], "label": MATCH}, ensure_ascii=False) + "\n")
    log.info("recommend: fine-tuning on %d co-liked pairs of %d items", len(pairs), len({i for p in pairs for i in p}))
    dev = config.dev_share if len(pairs) * config.dev_share >= 2 else 0.0
    train_config = load_config(None, {
        "task": "retrieval", "output_dir": out, "data.train": data, "data.split": [1 - dev, dev, 0.0],
        "data.split_seed": config.seed, "model.name": base_model, "model.max_length": config.max_length,
        "retrieval.mine_negatives": False, "retrieval.scale": config.scale,
        "training.epochs": config.epochs, "training.max_steps": config.max_steps,
        "training.batch_size": config.batch_size, "training.learning_rate": config.learning_rate,
        "training.seed": config.seed, "training.num_threads": config.num_threads,
        "training.eval_strategy": "epoch" if dev else "none", "training.early_stopping_patience": None,
        "training.save_total_limit": 1, "training.linear_probe": False})
    train_retrieval(train_config, callbacks=callbacks)
    return out
