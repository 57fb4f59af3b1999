"""Measuring a recommender offline: a time split per user, ranking metrics, the popularity baseline.

The protocol (issue 15): per user, the last `n` interactions by time are held out; the held-out ones rated at or
above the like threshold are that user's positives. Users with no positive among their held-out interactions are
skipped (and counted), as are users with no more than `n` interactions (they stay whole in train). A recommender
built on the rest ranks items for each evaluated user, seen items excluded, and is scored by

    recall@k  = |top k ∩ positives| / |positives|
    nDCG@k    = sum over hits of 1 / log2(rank + 1), divided by the same sum for a perfect ranking (all positives
                first, at most k of them): binary relevance

averaged over users. Everything here is a pure function of its arguments (nothing is read or written), so the
metrics can be checked by hand (tests/apps/recommend/test_recommend_metrics.py) and tuning can cut a validation
split from the training histories with the very same `leave_last_out`. `evaluate_recommender` and `tune_reranking`
measure a `Recommender` through `recommend`, the call that serves requests.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from goldmine.apps.recommend.data import Interaction, is_like, time_ordered

log = logging.getLogger(__name__)


@dataclass
class HoldOut:
    """A leave-last-n split: what a recommender may learn from, and what it is asked to find."""

    train: list[Interaction]
    held_out: dict[str, list[Interaction]]  # user -> their last n interactions (every evaluated user)
    positives: dict[str, set[str]]  # user -> held-out item ids they liked (users with at least one)
    skipped_no_positive: int = 0  # users whose held-out interactions hold no like
    skipped_too_few: int = 0  # users with no more than n interactions (kept whole in train)

    def summary(self) -> dict[str, int]:
        return {"evaluated_users": len(self.positives), "skipped_no_positive": self.skipped_no_positive,
                "skipped_too_few": self.skipped_too_few, "train_interactions": len(self.train),
                "positives": sum(len(p) for p in self.positives.values())}


def leave_last_out(interactions: Iterable[Interaction], n: int = 5, like_threshold: float = 4.0) -> HoldOut:
    """Hold out each user's last `n` interactions by timestamp (ties: the given order)."""
    train: list[Interaction] = []
    held_out: dict[str, list[Interaction]] = {}
    positives: dict[str, set[str]] = {}
    no_positive = too_few = 0
    for user, rows in time_ordered(interactions).items():
        if len(rows) <= n:
            train.extend(rows)
            too_few += 1
            continue
        train.extend(rows[:-n])
        last = rows[-n:]
        liked = {i.item_id for i in last if is_like(i, like_threshold)}
        if not liked:
            no_positive += 1
            continue
        held_out[user] = last
        positives[user] = liked
    return HoldOut(train, held_out, positives, no_positive, too_few)


def hold_out_items(interactions: Iterable[Interaction], items: Sequence[str], share: float, seed: int = 13,
                   like_threshold: float = 4.0) -> tuple[list[Interaction], set[str], list[Interaction]]:
    """Cold start: a seeded `share` of the items that someone liked, removed from training entirely. Returns
    (interactions without them, their ids, their interactions)."""
    interactions = list(interactions)
    liked = sorted({i.item_id for i in interactions if is_like(i, like_threshold)} & set(items))
    cold = set(random.Random(seed).sample(liked, round(share * len(liked))))
    return ([i for i in interactions if i.item_id not in cold], cold,
            [i for i in interactions if i.item_id in cold])


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    if not relevant:
        raise ValueError("recall is undefined without relevant items")
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    if not relevant:
        raise ValueError("nDCG is undefined without relevant items")
    gain = sum(1 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], start=1) if item in relevant)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return gain / ideal


def ranking_metrics(rankings: Mapping[str, Sequence[str]], positives: Mapping[str, set[str]],
                    k: int = 10) -> dict[str, float]:
    """Mean recall@k and nDCG@k over the users of `positives` (a user without a ranking counts as all misses)."""
    if not positives:
        return {f"recall{k}": 0.0, f"ndcg{k}": 0.0, "users": 0}
    recall = [recall_at_k(rankings.get(u, []), p, k) for u, p in positives.items()]
    ndcg = [ndcg_at_k(rankings.get(u, []), p, k) for u, p in positives.items()]
    return {f"recall{k}": sum(recall) / len(recall), f"ndcg{k}": sum(ndcg) / len(ndcg), "users": len(positives)}


def popularity_rankings(train: Iterable[Interaction], users: Iterable[str], k: int = 10,
                        like_threshold: float = 4.0, candidates: set[str] | None = None) -> dict[str, list[str]]:
    """The baseline: for each user, the `k` items most liked in `train` that they have not interacted with (ties:
    the smaller item id first), among `candidates` when given."""
    train = list(train)
    likes: dict[str, int] = {}
    seen: dict[str, set[str]] = {}
    for i in train:
        seen.setdefault(i.user_id, set()).add(i.item_id)
        if is_like(i, like_threshold):
            likes[i.item_id] = likes.get(i.item_id, 0) + 1
    pool = candidates if candidates is not None else set(likes)
    order = sorted(pool, key=lambda item: (-likes.get(item, 0), item))
    out = {}
    for user in users:
        mine = seen.get(user, set())
        out[user] = [item for item in order if item not in mine][:k]
    return out


def evaluate_recommender(recommender, positives: Mapping[str, set[str]], k: int = 10,
                         filters: Mapping | None = None) -> dict[str, float]:
    """`ranking_metrics` of a recommender's answers (`Recommender.recommend(user_id=...)`, seen items excluded):
    measured through the very call that serves requests."""
    rankings = {user: [r["item_id"] for r in recommender.recommend(user_id=user, k=k, filters=filters)]
                for user in positives}
    return ranking_metrics(rankings, positives, k)


RERANKING_GRID: dict[str, tuple] = {
    "recency_half_life": (None, 5.0, 20.0, 50.0),
    "popularity_weight": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
    "diversity": (0.0, 0.1, 0.2),
}


def tune_reranking(recommender, positives: Mapping[str, set[str]], grid: Mapping[str, Sequence] | None = None,
                   k: int = 10) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every combination of `grid` (settings of `RecommenderConfig`; default `RERANKING_GRID`) measured on
    `positives`, which must be a validation split cut from the training histories (`leave_last_out` of the
    recommender's own interactions), never the evaluation positives. Returns the best settings by nDCG@k (then
    recall@k) and every row; the recommender is left with the best settings."""
    grid = grid or RERANKING_GRID
    rows = []
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values, strict=True))
        recommender.config = recommender.config.model_copy(update=settings)
        measured = evaluate_recommender(recommender, positives, k)
        rows.append({**settings, f"recall{k}": measured[f"recall{k}"], f"ndcg{k}": measured[f"ndcg{k}"]})
        log.info("recommend tuning %s: recall@%d %.4f nDCG@%d %.4f", settings, k, measured[f"recall{k}"], k,
                 measured[f"ndcg{k}"])
    best = max(rows, key=lambda r: (r[f"ndcg{k}"], r[f"recall{k}"]))
    chosen = {name: best[name] for name in grid}
    recommender.config = recommender.config.model_copy(update=chosen)
    return chosen, rows


@dataclass
class ColdStart:
    """Users' likes of items that were held out of training entirely, for `cold_rankings`."""

    items: set[str]
    positives: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_interactions(cls, cold_items: set[str], cold_interactions: Iterable[Interaction],
                          users: Iterable[str], like_threshold: float = 4.0) -> ColdStart:
        """Positives: each of `users`' likes of a cold item (any time: the items were never trained on)."""
        wanted = set(users)
        positives: dict[str, set[str]] = {}
        for i in cold_interactions:
            if i.user_id in wanted and i.item_id in cold_items and is_like(i, like_threshold):
                positives.setdefault(i.user_id, set()).add(i.item_id)
        return cls(set(cold_items), positives)
