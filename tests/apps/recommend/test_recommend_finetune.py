"""Fine-tuning on co-liked pairs: which pairs are drawn, and `Recommender.fit` end to end on a tiny encoder."""

from __future__ import annotations

import json

import pytest

from goldmine.apps.recommend import FinetuneConfig, Interaction, Recommender, RecommenderConfig
from goldmine.apps.recommend.finetune import co_liked_pairs
from goldmine.errors import ConfigError, DataError


def likes(user: str, items: str, rating: float = 5.0) -> list[Interaction]:
    return [Interaction(user, item, rating, float(t)) for t, item in enumerate(items)]


def test_pairs_are_likes_within_the_window_each_unordered_pair_once():
    data = [*likes("u1", "abcd"), *likes("u2", "ba"), Interaction("u2", "x", 2.0, 9.0), *likes("u3", "e")]
    pairs = co_liked_pairs(data, 4.0, FinetuneConfig(window=1))
    # u1: a-b, b-c, c-d (window 1: next like only); u2: b-a again (taken once); x was rated 2: not a like;
    # u3: one like, no pair
    assert sorted(tuple(sorted(p)) for p in pairs) == [("a", "b"), ("b", "c"), ("c", "d")]
    wide = co_liked_pairs(data, 4.0, FinetuneConfig(window=3))
    assert len(wide) == 6  # every pair of u1's four likes
    reseeded = co_liked_pairs(data, 4.0, FinetuneConfig(window=3, seed=2))
    assert sorted(map(sorted, reseeded)) == sorted(map(sorted, wide))  # another seed: another order, same pairs


def test_pair_caps_per_user_and_in_all_and_unknown_items_left_out():
    data = likes("heavy", "abcdefghij")
    assert len(co_liked_pairs(data, 4.0, FinetuneConfig(window=9, pairs_per_user=5))) == 5
    assert len(co_liked_pairs(data, 4.0, FinetuneConfig(window=9, max_pairs=12))) == 12
    assert co_liked_pairs(data, 4.0, FinetuneConfig(window=9), known={"a", "b"}) in ([("a", "b")], [("b", "a")])


def test_fit_fine_tunes_on_co_liked_pairs_and_builds_with_the_result(tmp_path, bookshop, tiny_encoder_dir):
    items, interactions = bookshop
    config = RecommenderConfig(finetune=FinetuneConfig(max_steps=2, batch_size=8, dev_share=0.1))
    rec = Recommender.fit(items, interactions, tmp_path / "shop", config, base_model=str(tiny_encoder_dir))
    meta = json.loads((tmp_path / "shop" / "model" / "goldmine.json").read_text())
    assert meta["task"] == "retrieval" and meta["extra"]["global_step"] == 2
    pairs = (tmp_path / "shop" / "model" / "pairs.jsonl").read_text().splitlines()
    first = json.loads(pairs[0])
    assert first["label"] == "1" and first["text"] in {i.text() for i in items}
    assert rec.model_dir == tmp_path / "shop" / "model"
    assert len(rec.recommend(user_id="u0", k=3)) == 3
    loaded = Recommender.load(tmp_path / "shop")
    assert loaded.recommend(user_id="u0", k=3) == rec.recommend(user_id="u0", k=3)
    with pytest.raises(ConfigError, match="holds another encoder"):  # never taken for the untrained one
        Recommender.build(items, interactions, tmp_path / "shop", base_model=str(tiny_encoder_dir))
    rebuilt = Recommender.build(items, interactions, tmp_path / "shop", model_dir=rec.model_dir)
    assert rebuilt.recommend(user_id="u0", k=3) == rec.recommend(user_id="u0", k=3)


def test_fit_without_a_pair_says_what_to_do(tmp_path, bookshop, tiny_encoder_dir):
    items, _ = bookshop
    with pytest.raises(DataError, match="build with the pretrained encoder instead"):
        Recommender.fit(items, likes("u1", ["b00"]), tmp_path / "r", base_model=str(tiny_encoder_dir))
