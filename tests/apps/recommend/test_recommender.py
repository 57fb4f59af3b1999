"""The recommender on the demo bookshop with a tiny random encoder: scores as the module docstring defines them,
filters, explanations, cold-start items, saving and loading, and every bad input answered with a clear error."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from goldmine.apps.recommend import Interaction, Item, Recommender, RecommenderConfig, UnknownUser
from goldmine.apps.recommend.demo import NEW_BOOK
from goldmine.errors import ConfigError, InputError
from goldmine.retrieval.index import IndexUnusable


@pytest.fixture(scope="module")
def built(tmp_path_factory, bookshop, tiny_encoder_dir):
    items, interactions = bookshop
    strays = [Interaction("u0", "no-such-book", 5.0, 1.0), Interaction("u9", "gone", 2.0, 2.0)]
    return Recommender.build(items, [*interactions, *strays], tmp_path_factory.mktemp("rec") / "shop",
                             base_model=str(tiny_encoder_dir))


@pytest.fixture
def rec(built, tmp_path):
    """A private copy (tests that add items or interactions change the directory)."""
    return Recommender.load(shutil.copytree(built.directory, tmp_path / "shop"))


def liked(rec, user):
    return [i.item_id for i in rec.users[user] if i.rating >= 4]


def unit(v):
    return v / np.linalg.norm(v)


def test_interactions_with_unknown_items_are_counted_not_fatal(built, bookshop):
    _, interactions = bookshop
    assert built.report.unknown_item_interactions == 2
    assert built.report.unknown_items == ["no-such-book", "gone"]
    assert built.report.interactions == len(interactions) and built.report.items == 36
    assert built.report.users == 40


def test_a_score_is_the_cosine_of_the_item_and_the_mean_of_the_liked_items(built):
    vectors = built.index.vectors
    mine = liked(built, "u0")
    taste = unit(vectors[[built.row[i] for i in mine]].mean(axis=0))
    answers = built.recommend(user_id="u0", k=5)
    assert len(answers) == 5
    seen = {i.item_id for i in built.users["u0"]}
    for answer in answers:
        assert answer["item_id"] not in seen
        assert answer["score"] == pytest.approx(float(vectors[built.row[answer["item_id"]]] @ taste), abs=1e-5)
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True)
    # nothing unseen scores higher than the fifth answer
    unseen = [r for r in range(len(vectors)) if built.index.entries[r].id not in seen]
    assert max(float(vectors[r] @ taste) for r in unseen) == pytest.approx(scores[0], abs=1e-5)


def test_explanations_are_the_liked_items_closest_to_each_recommendation(built):
    mine = liked(built, "u0")
    for answer in built.recommend(user_id="u0", k=3):
        v = built.index.vectors[built.row[answer["item_id"]]]
        expected = sorted(dict.fromkeys(mine), key=lambda i: -float(built.index.vectors[built.row[i]] @ v))[:2]
        explanation = answer["explanation"]
        assert [c["item_id"] for c in explanation["similar_to"]] == expected
        titles = [c["title"] for c in explanation["similar_to"]]
        assert explanation["text"] == "Because you liked " + " and ".join(titles)


def test_popularity_prior_and_recency_change_the_score_as_configured(rec):
    mine = liked(rec, "u3")
    vectors = rec.index.vectors
    rec.config = rec.config.model_copy(update={"popularity_weight": 0.5, "recency_half_life": 2.0})
    likes = {}
    for rows in rec.users.values():
        for item in {i.item_id for i in rows if i.rating >= 4}:
            likes[item] = likes.get(item, 0) + 1
    weights = 0.5 ** (np.arange(len(mine))[::-1] / 2.0)  # the newest like weighs 1, two likes older 0.5
    taste = unit(weights @ vectors[[rec.row[i] for i in mine]])
    for answer in rec.recommend(user_id="u3", k=4):
        prior = math.log1p(likes.get(answer["item_id"], 0)) / math.log1p(max(likes.values()))
        similarity = float(vectors[rec.row[answer["item_id"]]] @ taste)
        assert answer["score"] == pytest.approx(similarity + 0.5 * prior, abs=1e-5)


def test_diversity_keeps_the_best_first_and_spreads_the_rest(rec):
    plain = rec.recommend(user_id="u5", k=6)
    rec.config = rec.config.model_copy(update={"diversity": 0.9})
    diverse = rec.recommend(user_id="u5", k=6)
    assert diverse[0]["item_id"] == plain[0]["item_id"]

    def spread(answers):
        v = rec.index.vectors[[rec.row[a["item_id"]] for a in answers]]
        return float((v @ v.T)[np.triu_indices(len(v), 1)].mean())

    assert spread(diverse) <= spread(plain) + 1e-6


def test_filters_seen_categories_ids(built, bookshop):
    items, _ = bookshop
    shelf = {i.id: i.categories[0] for i in items}
    seen = {i.item_id for i in built.users["u1"]}
    assert all(shelf[a["item_id"]] == "Cooking"
               for a in built.recommend(user_id="u1", k=10, filters={"categories": ["Cooking"]}))
    with_seen = built.recommend(user_id="u1", k=36, filters={"exclude_seen": False})
    assert len(with_seen) == 36 and seen <= {a["item_id"] for a in with_seen}
    assert len(built.recommend(user_id="u1", k=100)) == 36 - len(seen)  # fewer than k: all that is left
    assert len(built.recommend(user_id="u1", k=np.int64(2))) == 2  # a numpy integer is a whole number too
    only = built.recommend(user_id="u1", k=10, filters={"items": ["b00", "b11", "b22"], "exclude_items": ["b11"]})
    assert {a["item_id"] for a in only} == {"b00", "b22"} - seen
    assert built.recommend(user_id="u1", k=3, filters={"items": sorted(seen)}) == []  # all seen: nothing left


def test_a_history_given_with_the_request(built):
    by_id = built.recommend(history=["b10", "b11"], k=3)
    by_mapping = built.recommend(history=[{"item_id": "b11", "timestamp": 2}, {"item_id": "b10", "rating": 5,
                                                                               "timestamp": 1}], k=3)
    assert [a["item_id"] for a in by_id] == [a["item_id"] for a in by_mapping]
    assert not {"b10", "b11"} & {a["item_id"] for a in by_id}
    # a low rating marks the item as seen but shapes nothing: the taste is b10 alone
    assert [a["item_id"] for a in built.recommend(history=["b10", {"item_id": "b11", "rating": 1}], k=3)] == \
        [a["item_id"] for a in built.recommend(history=["b10"], k=4) if a["item_id"] != "b11"][:3]


def test_without_a_liked_item_the_most_popular_items_are_recommended(built):
    answers = built.recommend(history=[], k=3)
    counts = [int(built.likes[built.row[a["item_id"]]]) for a in answers]
    assert counts == sorted(built.likes, reverse=True)[:3]
    assert answers[0]["explanation"]["text"].startswith("Popular: liked by") and \
        answers[0]["explanation"]["similar_to"] == []
    only_disliked = built.recommend(history=[{"item_id": answers[0]["item_id"], "rating": 1}], k=3)
    assert answers[0]["item_id"] not in {a["item_id"] for a in only_disliked}  # seen, so left out


@pytest.mark.parametrize(("call", "message"), [
    ({"user_id": "nobody"}, "unknown user 'nobody'"),
    ({}, "give either user_id"),
    ({"user_id": "u1", "history": ["b00"]}, "not both"),
    ({"user_id": "u1", "k": 0}, "k: give a whole number from 1 to 100, got 0"),
    ({"user_id": "u1", "k": 101}, "got 101"),
    ({"user_id": "u1", "k": "3"}, "got '3'"),
    ({"user_id": "u1", "k": True}, "got True"),
    ({"user_id": "u1", "k": 2.0}, "got 2.0"),
    ({"history": ["b00", "zz"]}, r"1 item id\(s\) not in the catalog: \['zz'\]"),
    ({"history": "b00"}, "history: expected a list"),
    ({"history": [{"rating": 5}]}, r"history\[0\]: expected an item id"),
    ({"history": [{"item_id": "b00", "rating": float("nan")}]}, "finite numbers"),
    ({"history": ["b00"] * 10_001}, "10001 entries; the limit is 10000"),
    ({"user_id": "u1", "filters": {"categories": ["Cookin"]}}, "did you mean 'Cooking'"),
    ({"user_id": "u1", "filters": {"category": ["Cooking"]}}, r"unknown field\(s\) \['category'\]"),
    ({"user_id": "u1", "filters": {"items": "b00"}}, "filters.items: expected a list"),
    ({"user_id": "u1", "filters": ["Cooking"]}, "filters: expected a mapping"),
])
def test_bad_requests_get_a_clear_error(built, call, message):
    with pytest.raises(InputError, match=message):
        built.recommend(**call)


def test_an_unknown_user_is_its_own_error_for_the_http_layer(built):
    with pytest.raises(UnknownUser):
        built.recommend(user_id="u404")


def test_saved_and_loaded_answers_the_same(built, tmp_path):
    loaded = Recommender.load(shutil.copytree(built.directory, tmp_path / "moved"))  # the model moves with it
    assert loaded.recommend(user_id="u7", k=5) == built.recommend(user_id="u7", k=5)
    assert loaded.config == built.config and loaded.report == built.report
    with pytest.raises(ConfigError, match="not a recommender directory"):
        Recommender.load(tmp_path)


def test_loading_with_another_encoder_is_refused(built, tmp_path, tiny_encoder_dir):
    other = Recommender.build([Item("x", "other")], [], tmp_path / "other", base_model=str(tiny_encoder_dir),
                              config=RecommenderConfig(finetune={"max_length": 16}))
    with pytest.raises(IndexUnusable, match="built with another model"):
        Recommender.load(built.directory, model_dir=other.model_dir)


def test_a_new_item_is_recommendable_from_its_text_alone(rec):
    before = rec.index.vectors.copy()
    rec.add_items([NEW_BOOK])
    assert np.array_equal(rec.index.vectors[:36], before)  # nothing else embedded again
    assert rec.likes[rec.row[NEW_BOOK.id]] == 0 and rec.report.items == 37
    only_new = rec.recommend(user_id="u2", k=5, filters={"items": [NEW_BOOK.id]})
    assert [a["item_id"] for a in only_new] == [NEW_BOOK.id]
    reloaded = Recommender.load(rec.directory)
    assert NEW_BOOK.id in reloaded.row and reloaded.items[-1] == NEW_BOOK
    assert np.allclose(reloaded.index.vectors, rec.index.vectors)
    with pytest.raises(InputError, match=r"already in the catalog or given twice: \['new-1'\]"):
        rec.add_items([NEW_BOOK])
    with pytest.raises(InputError, match="no items given"):
        rec.add_items([])


def test_new_interactions_are_seen_by_the_next_request(rec):
    report = rec.add_interactions([Interaction("newcomer", "b20", 5.0, 1.0), Interaction("newcomer", "zz", 5.0, 2.0)])
    assert report.interactions == 1 and report.unknown_item_interactions == 1
    answers = rec.recommend(user_id="newcomer", k=3)
    assert "b20" not in {a["item_id"] for a in answers}
    assert answers[0]["explanation"]["similar_to"][0]["item_id"] == "b20"
    assert Recommender.load(rec.directory).users["newcomer"] == [Interaction("newcomer", "b20", 5.0, 1.0)]


def test_bad_catalogs_are_refused_before_anything_is_written(tmp_path, tiny_encoder_dir):
    with pytest.raises(InputError, match="no items given"):
        Recommender.build([], [], tmp_path / "r", base_model=str(tiny_encoder_dir))
    with pytest.raises(InputError, match=r"given twice: \['a'\]"):
        Recommender.build([Item("a", "A"), Item("a", "B")], [], tmp_path / "r", base_model=str(tiny_encoder_dir))
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="popularity_weight"):
        RecommenderConfig.from_dict({"popularity_weight": -1})


def test_past_the_faiss_size_candidates_come_from_the_index_and_filters_fall_back_to_exact(rec, monkeypatch):
    from goldmine.apps.recommend import recommender as module
    from goldmine.retrieval import index as index_module

    rec.config = rec.config.model_copy(update={"candidates": 10})
    exact = rec.recommend(user_id="u4", k=5)
    exact_cooking = rec.recommend(user_id="u4", k=10, filters={"categories": ["Cooking"]})
    monkeypatch.setattr(index_module, "FAISS_FROM", 10)
    monkeypatch.setattr(module, "FAISS_FROM", 10)
    rec.index.save()  # 36 entries >= 10: saved with an IVF structure
    assert rec.index.meta["backend"] == "faiss"
    exact_scoring = []
    einsum = np.einsum
    monkeypatch.setattr(np, "einsum", lambda *a, **kw: exact_scoring.append(1) or einsum(*a, **kw))
    approximate = rec.recommend(user_id="u4", k=5)
    assert not exact_scoring  # the 10 candidates came from the IVF index
    vectors = rec.index.vectors
    taste = unit(vectors[[rec.row[i] for i in liked(rec, "u4")]].mean(axis=0))
    for answer in approximate:  # IVF may miss an item, never misstate one
        assert answer["score"] == pytest.approx(float(vectors[rec.row[answer["item_id"]]] @ taste), abs=1e-5)
    assert approximate[0] == exact[0]
    assert rec.recommend(user_id="u4", k=10, filters={"categories": ["Cooking"]}) == exact_cooking
    assert exact_scoring  # too few Cooking books among the IVF's answers: scored exactly


def test_evaluation_and_tuning_go_through_recommend(rec):
    from goldmine.apps.recommend.evaluation import evaluate_recommender, ranking_metrics, tune_reranking

    top = {u: rec.recommend(user_id=u, k=3)[0]["item_id"] for u in ("u1", "u2")}
    positives = {"u1": {top["u1"]}, "u2": {top["u2"], "b00"}}
    assert evaluate_recommender(rec, positives, k=3) == ranking_metrics(
        {u: [a["item_id"] for a in rec.recommend(user_id=u, k=3)] for u in positives}, positives, 3)
    # the most popular item first for everyone (a huge popularity weight) cannot beat each user's own top item
    chosen, rows = tune_reranking(rec, positives, {"popularity_weight": (100.0, 0.0)}, k=3)
    assert chosen == {"popularity_weight": 0.0} and rec.config.popularity_weight == 0.0
    assert [r["popularity_weight"] for r in rows] == [100.0, 0.0] and rows[1]["recall3"] >= rows[0]["recall3"]
