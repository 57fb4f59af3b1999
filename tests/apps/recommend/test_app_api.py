"""The recommender app's Python API: its config (the encoder by registry name, a missing version named by its line),
the state built over the registered encoder, cold-start items, interactions with unknown items counted, a new
encoder version re-embedding the catalog, bad input, and concurrent additions (none lost)."""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from goldmine.apps.base import load_app_config
from goldmine.apps.recommend import Interaction, Item, UnknownUser
from goldmine.apps.recommend.api import RecommendApp, StateMissing
from goldmine.apps.recommend.demo import NEW_BOOK
from goldmine.apps.recommend.recommender import Recommender
from goldmine.errors import ConfigError, InputError
from goldmine.serving.registry import promote, register


def shelf_of(app: RecommendApp) -> dict[str, str]:
    return {e.id: e.payload["categories"][0] for e in app.recommender.index.entries}


def test_config_names_the_encoder_and_its_line(recommend_config, encoder, db):
    config = load_app_config(recommend_config(recommender={"diversity": 0.3}), "recommend")
    assert config.model_refs()["models.encoder"].name == "shop-encoder"
    assert config.recommender.diversity == 0.3 and config.state_path() == config.path("state")
    missing = load_app_config(recommend_config("v404.yaml", models={"encoder": {"name": "shop-encoder",
                                                                              "version": "v404"}}))
    with pytest.raises(ConfigError, match=r"v404.yaml:4: models.encoder: model 'shop-encoder' has no alias or "
                                          r"version 'v404'"):
        RecommendApp.open(missing, db)
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: recommender.diversity: Input should be less than 1"):
        load_app_config(recommend_config("bad.yaml", recommender={"diversity": 2}))
    with pytest.raises(StateMissing, match=r"recommend.yaml:\d+: state_dir: .* holds no recommender yet"):
        RecommendApp.open(config, db)


def test_build_recommend_and_explain(built_app, bookshop, encoder):
    app = built_app
    assert app.encoder.version == encoder.version
    assert app.describe()["items"] == 36 and app.describe()["users"] == 40
    liked = {i.item_id for i in app.recommender.users["u0"] if i.rating >= 4}
    answers = app.recommend(user_id="u0", k=4)
    assert len(answers) == 4
    for answer in answers:
        assert {c["item_id"] for c in answer["explanation"]["similar_to"]} <= liked
        assert answer["explanation"]["text"].startswith("Because you liked ")
    assert len(app.recommend(user_id="u0")) == 10  # the config's default_k
    comedy = app.recommend(history=["b00", "b01"], k=3, filters={"categories": ["Cooking"]})
    assert {shelf_of(app)[a["item_id"]] for a in comedy} == {"Cooking"}
    # what the Recommender itself answers, with the same settings, on the same state
    assert Recommender.load(app.directory, encoder.path).recommend(user_id="u0", k=4) == answers


def test_cold_start_items_and_interactions_persist(built_app, db, recommend_config):
    app = built_app
    assert app.add_items([NEW_BOOK]) == {"added": 1, "items": 37}
    scifi = app.recommend(history=["b10"], k=10, filters={"categories": ["Science fiction"]})
    assert NEW_BOOK.id in [a["item_id"] for a in scifi]  # recommendable from its text alone
    added = app.add_interactions([Interaction("new-user", NEW_BOOK.id, 5.0, 1.0),
                                  Interaction("new-user", "no-such-book", 5.0, 2.0),
                                  Interaction("u0", "gone", 1.0, 3.0)])
    assert (added["added"], added["users"]) == (1, 41)
    [warning] = added["warnings"]
    assert (warning["kind"], warning["count"], warning["examples"]) == ("unknown_items", 2, ["no-such-book", "gone"])
    again = RecommendApp.open(load_app_config(recommend_config(), "recommend"), db)  # from disk
    assert NEW_BOOK.id in again.recommender.row and "new-user" in again.recommender.users
    assert again.recommend(user_id="new-user", k=2)[0]["explanation"]["similar_to"][0]["item_id"] == NEW_BOOK.id


def test_bad_input_is_refused_and_nothing_is_lost(built_app):
    app = built_app
    before = len(app.recommender.index.entries)
    with pytest.raises(InputError, match=r"item ids already in the catalog or given twice: \['b00'\]"):
        app.add_items([Item("b00", "Again")])
    with pytest.raises(InputError, match=r"given twice: \['x'\]"):
        app.add_items([Item("x", "One"), Item("x", "Two")])
    with pytest.raises(InputError, match="no items given"):
        app.add_items([])
    with pytest.raises(InputError, match="no interactions given"):
        app.add_interactions([])
    assert len(app.recommender.index.entries) == before and "x" not in app.recommender.row
    with pytest.raises(UnknownUser, match="unknown user 'nobody'"):
        app.recommend(user_id="nobody")
    for k in (0, 101, 2.5):
        with pytest.raises(InputError, match="k: give a whole number from 1 to 100"):
            app.recommend(user_id="u0", k=k)
    with pytest.raises(InputError, match="give either user_id"):
        app.recommend()
    with pytest.raises(InputError, match=r"not in the catalog: \['nope'\]"):
        app.recommend(history=["nope"])
    with pytest.raises(InputError, match="did you mean 'Cooking'"):
        app.recommend(user_id="u0", filters={"categories": ["Cookin"]})


def test_concurrent_additions_lose_nothing(built_app, db, recommend_config):
    """Two threads on one app and a second app object on the same state (as a CLI next to a server would be) add
    items and interactions at once: every one of them is there afterwards, in memory and on disk."""
    first = built_app
    second = RecommendApp.open(load_app_config(recommend_config(), "recommend"), db)
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def add(app: RecommendApp, prefix: str) -> None:
        try:
            start.wait()
            for n in range(4):
                app.add_items([Item(f"{prefix}{n}", f"Book {prefix} {n}", ("History",))])
                app.add_interactions([Interaction(f"reader-{prefix}", f"{prefix}{n}", 5.0, float(n))])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=add, args=args) for args in ((first, "a"), (first, "b"), (second, "c"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    wanted = {f"{p}{n}" for p in "abc" for n in range(4)}
    on_disk = Recommender.load(first.directory, first.encoder.path)
    assert wanted <= set(on_disk.row) and len(on_disk.index.entries) == 36 + 12
    assert {u: len(on_disk.users[u]) for u in ("reader-a", "reader-b", "reader-c")} == {
        "reader-a": 4, "reader-b": 4, "reader-c": 4}
    shown = first.recommend(user_id="reader-c", k=50, filters={"categories": ["History"], "exclude_seen": False})
    assert wanted <= {a["item_id"] for a in shown}
    meta = json.loads((first.directory / "recommender.json").read_text())
    assert meta["report"]["items"] == 48


def test_a_new_encoder_version_embeds_the_catalog_again(built_app, encoder_run, encoder, db, settings,
                                                        recommend_config, tmp_path):
    built_app.add_items([NEW_BOOK])
    other = shutil.copytree(encoder_run, tmp_path / "other-encoder")
    meta = json.loads((other / "goldmine.json").read_text())
    (other / "goldmine.json").write_text(json.dumps({**meta, "extra": {**meta.get("extra", {}), "note": "v2"}}))
    version = register(db, settings.registry_dir, "shop-encoder", other, "acme").version
    assert version != encoder.version
    promote(db, "shop-encoder", version, tenant="acme")
    app = RecommendApp.open(load_app_config(recommend_config(), "recommend"), db)
    assert app.encoder.version == version and len(app.recommender.index.entries) == 37  # nothing lost
    assert app.recommender.index.meta["model_dir"] == app.encoder.path
    assert len(app.recommender.users) == 40 and app.recommend(user_id="u1", k=3)


def test_the_recommenders_own_lock_keeps_concurrent_additions(built_app):
    """The Recommender alone (no file lock around it): two threads adding items and interactions to one object."""
    recommender = built_app.recommender
    start = threading.Barrier(2)

    def add(prefix: str) -> None:
        start.wait()
        for n in range(5):
            recommender.add_items([Item(f"{prefix}{n}", f"Book {prefix} {n}", ("Travel",))])
            recommender.add_interactions([Interaction(prefix, f"{prefix}{n}", 5.0, float(n))])

    threads = [threading.Thread(target=add, args=(p,)) for p in "pq"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reloaded = Recommender.load(recommender.directory, built_app.encoder.path)
    for state in (recommender, reloaded):
        assert {f"{p}{n}" for p in "pq" for n in range(5)} <= set(state.row) and len(state.index.entries) == 46
        assert (len(state.users["p"]), len(state.users["q"])) == (5, 5)
