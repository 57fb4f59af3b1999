"""The offline protocol by hand: leave-last-n per user, recall@k and nDCG@k, the popularity baseline, cold items."""

from __future__ import annotations

import math

import pytest

from goldmine.apps.recommend.data import Interaction
from goldmine.apps.recommend.evaluation import (
    ColdStart,
    hold_out_items,
    leave_last_out,
    ndcg_at_k,
    popularity_rankings,
    ranking_metrics,
    recall_at_k,
)


def test_recall_counts_the_share_of_positives_in_the_top_k():
    assert recall_at_k(["a", "b", "c", "d"], {"b", "x"}, k=3) == 0.5
    assert recall_at_k(["a", "b", "c", "d"], {"d"}, k=3) == 0.0  # rank 4 is past k
    assert recall_at_k(["a"], {"a", "b", "c"}, k=10) == pytest.approx(1 / 3)  # a short list is not padded
    with pytest.raises(ValueError):
        recall_at_k(["a"], set())


def test_ndcg_discounts_by_log_rank_and_divides_by_the_ideal_order():
    # hits at ranks 1 and 3 of 2 positives: (1 + 1/log2(4)) / (1 + 1/log2(3))
    assert ndcg_at_k(["a", "x", "b"], {"a", "b"}, k=10) == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["x", "a"], {"a"}, k=10) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(["a", "b"], {"a", "b"}, k=10) == 1.0
    # 3 positives but k = 2: the ideal is two hits, so two hits in the top 2 is perfect
    assert ndcg_at_k(["a", "b", "c"], {"a", "b", "c"}, k=2) == 1.0
    assert ndcg_at_k(["x", "y"], {"a"}, k=2) == 0.0


def test_ranking_metrics_average_over_users_and_count_a_missing_ranking_as_misses():
    metrics = ranking_metrics({"u1": ["a", "b"], "u2": ["z"]}, {"u1": {"a"}, "u2": {"y"}, "u3": {"q"}}, k=10)
    assert metrics == {"recall10": pytest.approx(1 / 3), "ndcg10": pytest.approx(1 / 3), "users": 3}
    assert ranking_metrics({}, {}, k=5) == {"recall5": 0.0, "ndcg5": 0.0, "users": 0}


def ratings(user: str, rows: list[tuple[str, float, float]]) -> list[Interaction]:
    return [Interaction(user, item, rating, t) for item, rating, t in rows]


def test_leave_last_out_holds_out_the_latest_by_time_and_skips_users_without_a_positive():
    data = (ratings("u1", [("a", 5, 3), ("b", 2, 1), ("c", 4, 5), ("d", 1, 4), ("e", 5, 2)])  # time: b e a d c
            + ratings("u2", [("a", 5, 1), ("b", 2, 2), ("c", 3, 3)])
            + ratings("u3", [("a", 5, 1)]))
    split = leave_last_out(data, n=2, like_threshold=4)
    assert [i.item_id for i in split.held_out["u1"]] == ["d", "c"]
    assert split.positives == {"u1": {"c"}}  # d was rated 1: held out, not a positive
    assert split.skipped_no_positive == 1  # u2's last two (b: 2, c: 3) hold no like
    assert split.skipped_too_few == 1  # u3 has 1 <= n interactions: kept whole in train
    assert sorted((i.user_id, i.item_id) for i in split.train) == [
        ("u1", "a"), ("u1", "b"), ("u1", "e"), ("u2", "a"), ("u3", "a")]
    assert split.summary() == {"evaluated_users": 1, "skipped_no_positive": 1, "skipped_too_few": 1,
                               "train_interactions": 5, "positives": 1}


def test_ties_in_time_keep_the_given_order():
    split = leave_last_out(ratings("u", [("a", 5, 1), ("b", 5, 1), ("c", 5, 1)]), n=1)
    assert split.positives == {"u": {"c"}}


def test_popularity_ranks_the_most_liked_unseen_items_with_ties_by_id():
    train = (ratings("u1", [("a", 5, 1), ("b", 4, 2), ("c", 1, 3)]) + ratings("u2", [("a", 5, 1), ("c", 2, 2)])
             + ratings("u3", [("b", 5, 1), ("d", 5, 2)]))
    # likes: a 2, b 2, d 1; c has no like (it is not ranked: no like, no candidate)
    rankings = popularity_rankings(train, ["u1", "u2", "u3", "new"], k=2)
    assert rankings == {"u1": ["d"], "u2": ["b", "d"], "u3": ["a"], "new": ["a", "b"]}
    assert popularity_rankings(train, ["new"], k=3, candidates={"c", "d"}) == {"new": ["d", "c"]}


def test_cold_items_are_a_seeded_share_of_liked_items_removed_from_training():
    data = [Interaction(f"u{n % 7}", f"i{n % 40}", 5.0 if n % 3 else 2.0, n) for n in range(400)]
    kept, cold, removed = hold_out_items(data, [f"i{n}" for n in range(40)], share=0.1, seed=1)
    assert len(cold) == 4 and not {i.item_id for i in kept} & cold
    assert {i.item_id for i in removed} == cold and len(kept) + len(removed) == 400
    assert hold_out_items(data, [f"i{n}" for n in range(40)], share=0.1, seed=1)[1] == cold  # reproducible
    start = ColdStart.from_interactions(cold, removed, users=["u1", "u2"])
    assert set(start.positives) <= {"u1", "u2"}
    assert all(items <= cold for items in start.positives.values())
