"""A recommender demo on a catalog the project writes itself: a small bookshop (items with descriptions) and readers
whose tastes follow the shelves, so the recommendations can be judged by eye.

MovieLens cannot ship with the product (research use only), so the demo makes its own data: 6 shelves of 6 books,
each book with a templated title, tags and a one-line description; 40 readers, each fond of one or two shelves
(ratings 4-5 there, an occasional 1-3 elsewhere). Everything draws from one `random.Random(seed)`, so a seed always
writes byte-identical files. `run_demo` builds a recommender from them, answers a few readers with explanations,
then adds a new book and answers the readers of its shelf again: it is recommended from its text alone.

`run_app_demo` (`goldmine app recommend demo`) does the same through the app: the base encoder saved and registered
in a serving database under `<out>/serving`, an app config naming it (`<out>/recommend.yaml`), the state built with
`api.build` and every answer from `RecommendApp`, the object the CLI and the HTTP routes use. Nothing is
downloaded: the bundled encoder, or any local model directory, is the base model.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Any

import yaml

from goldmine.apps.recommend.config import RecommenderConfig
from goldmine.apps.recommend.data import Item, is_like, read_interactions, read_items

ITEMS_FILE, INTERACTIONS_FILE = "books.jsonl", "ratings.csv"
SHELVES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    # shelf: (title words, tags, description template)
    "Mystery": (("Murder", "Secret", "Shadow", "Detective", "Alibi", "Vanishing"),
                ("whodunit", "detective", "crime", "suspense"),
                "A detective untangles {a} and {b} in a small town full of suspects."),
    "Science fiction": (("Starship", "Android", "Orbit", "Colony", "Quantum", "Galaxy"),
                        ("space", "robots", "future", "aliens"),
                        "A crew far from Earth faces {a} and {b} on a distant planet."),
    "Cooking": (("Kitchen", "Bread", "Spice", "Pasta", "Harvest", "Oven"),
                ("recipes", "baking", "vegetarian", "family meals"),
                "Recipes for {a} and {b}, with tips for cooking at home."),
    "Travel": (("Road", "Island", "Mountain", "Harbour", "Desert", "Train"),
               ("journey", "guide", "adventure", "maps"),
               "A traveller's guide to {a} and {b}, with routes and places to stay."),
    "Gardening": (("Garden", "Rose", "Seed", "Orchard", "Herb", "Meadow"),
                  ("plants", "flowers", "compost", "vegetables"),
                  "How to grow {a} and {b} in a small garden through the seasons."),
    "History": (("Empire", "Revolution", "Castle", "Dynasty", "Crown", "War"),
                ("ancient", "kings", "battles", "archives"),
                "The story of {a} and {b}, told from letters and archives."),
}
BOOKS_PER_SHELF = 6
READERS = 40
NEW_BOOK = Item("new-1", "The Last Starship Colony", ("Science fiction",), ("space", "aliens"),
                "A colony ship wakes its crew above an alien planet.")


@dataclass(frozen=True)
class DemoFiles:
    """Where the demo data was written."""

    items: Path
    interactions: Path


def write_demo_data(directory: str | Path, seed: int = 13) -> DemoFiles:
    """Write books.jsonl (items) and ratings.csv (user_id, item_id, rating, timestamp) into `directory`."""
    rng = random.Random(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    books: dict[str, list[str]] = {}
    lines = []
    for s, (shelf, (words, tags, template)) in enumerate(SHELVES.items()):
        for b, (first, second) in enumerate(rng.sample(list(permutations(words, 2)), BOOKS_PER_SHELF)):
            book = f"b{s}{b}"
            books.setdefault(shelf, []).append(book)
            lines.append(json.dumps({"id": book, "title": f"The {first} of the {second}", "categories": [shelf],
                                     "tags": rng.sample(tags, 2),
                                     "description": template.format(a=first.lower(), b=second.lower())}))
    (directory / ITEMS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = ["user_id,item_id,rating,timestamp"]
    shelves = list(SHELVES)
    for reader in range(READERS):
        fond = rng.sample(shelves, rng.choice((1, 2)))
        events = [(book, rng.choice((4.0, 4.5, 5.0))) for shelf in fond
                  for book in rng.sample(books[shelf], rng.randint(3, 5))]
        others = [book for shelf in shelves if shelf not in fond for book in books[shelf]]
        events += [(book, rng.choice((1.0, 2.0, 3.0))) for book in rng.sample(others, rng.randint(0, 2))]
        rng.shuffle(events)
        rows += [f"u{reader},{book},{rating},{1_700_000_000 + 3600 * t}" for t, (book, rating) in enumerate(events)]
    (directory / INTERACTIONS_FILE).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return DemoFiles(directory / ITEMS_FILE, directory / INTERACTIONS_FILE)


def run_demo(directory: str | Path, base_model: str = "bundled", users: tuple[str, ...] = ("u0", "u1", "u2"),
             k: int = 5, config: RecommenderConfig | None = None) -> dict[str, Any]:
    """Write the demo data, build a recommender on `base_model` in `<directory>/recommender`, answer `users`, add
    a new book and answer again. Returns everything shown, for a CLI to print."""
    from goldmine.apps.recommend.recommender import Recommender

    directory = Path(directory)
    files = write_demo_data(directory / "data")
    items, _ = read_items(files.items)
    interactions, _ = read_interactions(files.interactions)
    recommender = Recommender.build(items, interactions, directory / "recommender", config=config,
                                    base_model=base_model)
    shown = _answer(recommender, recommender.recommend, recommender.add_items, items, users, k)
    return {"files": {"items": str(files.items), "interactions": str(files.interactions)},
            "recommender": str(directory / "recommender"), **shown}


def _answer(recommender, recommend, add_items, items: list[Item], users: tuple[str, ...], k: int) -> dict[str, Any]:
    """Answer `users`, add the new book, answer the readers of its shelf alone: what the demos show."""
    threshold = recommender.config.like_threshold
    liked = {user: [i.item_id for i in recommender.users[user] if is_like(i, threshold)] for user in users}
    before = {user: recommend(user_id=user, k=k) for user in users}
    add_items([NEW_BOOK])
    shelf = {item.id for item in items if NEW_BOOK.categories[0] in item.categories}
    fans = [u for u, rows in recommender.users.items()  # readers who like the new book's shelf and no other
            if {i.item_id in shelf for i in rows if is_like(i, threshold)} == {True}]
    after = {user: recommend(user_id=user, k=k) for user in fans[:3]}
    return {"liked": liked, "recommendations": before, "new_item": NEW_BOOK.to_dict(), "after_new_item": after}


APP_CONFIG, TENANT, MODEL = "recommend.yaml", "demo", "bookshop-encoder"


def build_app_demo(out: str | Path, base_model: str = "bundled") -> Path:
    """Write the data, save and register the base encoder, write the app config and build the state: the app
    config's path."""
    from goldmine.apps.base import load_app_config
    from goldmine.apps.recommend import api
    from goldmine.serving.db import open_database
    from goldmine.serving.registry import register
    from goldmine.serving.settings import load_settings

    out = Path(out)
    files = write_demo_data(out / "data")
    encoder = api.save_base_encoder(out / "encoder", base_model)
    settings = load_settings(data_dir=out / "serving", preload=False)
    db = open_database(settings)
    try:
        register(db, settings.registry_dir, MODEL, encoder, TENANT)
        path = out / APP_CONFIG
        path.write_text(yaml.safe_dump({"app": "recommend", "tenant": TENANT,
                                        "models": {"encoder": {"name": MODEL, "version": "production"}},
                                        "state_dir": "state", "recommender": {"explain": 2}}, sort_keys=False))
        items, interactions, _ = api.read_catalog(files.items, files.interactions)
        api.build(load_app_config(path, "recommend"), db, items, interactions)
    finally:
        db.dispose()
    return path


def run_app_demo(out: str | Path, base_model: str = "bundled", users: tuple[str, ...] = ("u0", "u1", "u2"),
                 k: int = 5) -> dict[str, Any]:
    """`build_app_demo`, then the answers of `run_demo`, each through `RecommendApp`."""
    from goldmine.apps.base import load_app_config
    from goldmine.apps.recommend.api import RecommendApp
    from goldmine.serving.db import open_database
    from goldmine.serving.settings import load_settings

    out = Path(out)
    path = build_app_demo(out, base_model)
    db = open_database(load_settings(data_dir=out / "serving", preload=False))
    try:
        app = RecommendApp.open(load_app_config(path, "recommend"), db)
        items, _ = read_items(out / "data" / ITEMS_FILE)
        shown = _answer(app.recommender, app.recommend, app.add_items, items, users, k)
        return {"app_config": str(path), "state_dir": str(app.directory), **shown}
    finally:
        db.dispose()
