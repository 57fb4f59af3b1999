"""The recommender: items by text, users by what they liked, candidates by embedding similarity, re-ranked,
filtered and explained.

    rec = Recommender.fit(items, interactions, "runs/shop")           # fine-tune on co-liked pairs, then build
    rec = Recommender.build(items, interactions, "runs/shop")         # or the pretrained encoder as it is
    rec = Recommender.load("runs/shop")
    rec.recommend(user_id="42", k=10, filters={"categories": ["Comedy"]})
    rec.recommend(history=["item-1", "item-7"], k=5)                   # a user the recommender has not seen
    rec.add_items([Item("new-1", "A new film", ("Drama",))])          # recommendable at once, from its text

How one request is answered:

1. The user's taste is the mean of their liked items' vectors (each weighted by recency when
   `recency_half_life` is set); items they only saw (rated below the like threshold) shape nothing.
2. Candidates: the `candidates` items most similar to the taste (cosine), after the filters: seen items, items
   excluded by id, items outside the requested categories.
3. Re-ranking: similarity + `popularity_weight` x a popularity prior (log of the likes, scaled to [0, 1]), and,
   with `diversity` > 0, maximal marginal relevance (Carbonell & Goldstein, 1998): each next pick is the
   candidate with the best score minus `diversity` x its highest similarity to the picks before it.
4. Each recommendation is explained by the user's liked items that are closest to it.

Requests and additions may come from several threads at once (the HTTP routes run them in worker threads): one
lock per recommender makes each `add_items` / `add_interactions` (the change and its save) and each `recommend`
whole, so two additions never lose one another's items and a request sees the catalog before or after an addition,
never halfway. Every file is written through a temporary name and renamed.

A user without a liked item (a new user, or one who only rated items low) gets the most popular items, with that
as the explanation: a cold user is normal, not an error.

The item vectors live in a goldmine search index (`goldmine.retrieval.index`, numpy or FAISS past its size limit)
tied to the encoder that made them, so a recommender can only be loaded with that encoder. A directory holds:

    recommender.json   settings, the encoder's directory, counts (and what was skipped while building)
    users.jsonl        each user's interactions, oldest first
    index/             the item index (items' text, fields and vectors)
    model/             the encoder, when the recommender made it (fit, or build from a base model)
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from difflib import get_close_matches
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from goldmine.apps.recommend.config import MAX_K, RecommenderConfig
from goldmine.apps.recommend.data import Interaction, Item, is_like
from goldmine.errors import ConfigError, InputError
from goldmine.retrieval.index import FAISS_FROM, Entry, Index
from goldmine.retrieval.index import MAX_K as INDEX_MAX_K

log = logging.getLogger(__name__)
META_FILE, USERS_FILE, INDEX_DIR, MODEL_DIR = "recommender.json", "users.jsonl", "index", "model"
FORMAT = 1
UNKNOWN_SHOWN = 20  # unknown item ids kept as examples in the build report
MAX_HISTORY = 10_000  # interactions in a history sent with one request


class UnknownUser(InputError):
    """A user id the recommender has no interactions of (the HTTP layer may answer 404)."""


@dataclass
class Filters:
    """What a request leaves out. `categories`: only items with at least one of these categories; `items`: only
    these item ids (new arrivals, what is in stock); `exclude_items`: never these."""

    exclude_seen: bool = True
    categories: list[str] | None = None
    items: list[str] | None = None
    exclude_items: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, value: Filters | Mapping[str, Any] | None) -> Filters:
        if value is None:
            return cls()
        if isinstance(value, Filters):
            return value
        if not isinstance(value, Mapping):
            raise InputError(f"filters: expected a mapping with exclude_seen, categories, exclude_items; got "
                             f"{type(value).__name__}")
        known = ("exclude_seen", "categories", "items", "exclude_items")
        if unknown := sorted(set(value) - set(known)):
            raise InputError(f"filters: unknown field(s) {unknown}; known: {', '.join(known)}")
        lists = {}
        for name in ("categories", "items", "exclude_items"):
            given = value.get(name)
            if given is not None and (isinstance(given, str) or not isinstance(given, Sequence)):
                raise InputError(f"filters.{name}: expected a list of strings, got {given!r:.80}")
            lists[name] = [str(v) for v in given] if given is not None else None
        return cls(bool(value.get("exclude_seen", True)), lists["categories"], lists["items"],
                   lists["exclude_items"] or [])


@dataclass
class BuildReport:
    """What building kept and what it skipped: interactions whose item is not in the catalog are counted (and a
    few of their ids kept as examples), never a failure."""

    items: int = 0
    users: int = 0
    interactions: int = 0
    likes: int = 0
    unknown_item_interactions: int = 0
    unknown_items: list[str] = field(default_factory=list)

    def count_unknown(self, item_id: str) -> None:
        self.unknown_item_interactions += 1
        if len(self.unknown_items) < UNKNOWN_SHOWN and item_id not in self.unknown_items:
            self.unknown_items.append(item_id)


class Recommender:
    """Items and users of one catalog, with the encoder that embedded the items. See the module docstring."""

    def __init__(self, directory: Path, config: RecommenderConfig, index: Index,
                 users: dict[str, list[Interaction]], report: BuildReport, model_dir: Path):
        self.directory, self.config, self.index, self.model_dir = Path(directory), config, index, Path(model_dir)
        self.users, self.report = users, report
        self._model = None
        self.lock = threading.Lock()  # one change (and its save) or one request at a time: see the module docstring
        self._reindex()

    # ---- making ----
    @classmethod
    def build(cls, items: Sequence[Item], interactions: Iterable[Interaction], directory: str | Path,
              model_dir: str | Path | None = None, config: RecommenderConfig | None = None,
              base_model: str = "bundled") -> Recommender:
        """Embed `items` with the encoder of `model_dir` (a goldmine retrieval model: a fine-tuned one, or None to
        save `base_model` untrained into `<directory>/model`), record the users' interactions and save everything
        in `directory`. Interactions with items outside `items` are counted in `report` and skipped."""
        config = config or RecommenderConfig()
        directory = Path(directory)
        items = _checked_items(items, set())
        if model_dir is None:
            model_dir = directory / MODEL_DIR
            _save_pretrained(base_model, model_dir, config.finetune.max_length)
        model_dir = Path(model_dir)
        model = _load_model(model_dir, config.batch_size)
        index = Index.build(model_dir, [_entry(item) for item in items], name="items", out=directory / INDEX_DIR,
                            model=model)
        report = BuildReport(items=len(items))
        users = _users(interactions, {item.id for item in items}, report, config.like_threshold)
        recommender = cls(directory, config, index, users, report, model_dir)
        recommender._model = model
        recommender.save()
        log.info("recommend: built %s: %d items, %d users, %d interactions (%d skipped: unknown items)", directory,
                 report.items, report.users, report.interactions, report.unknown_item_interactions)
        return recommender

    @classmethod
    def fit(cls, items: Sequence[Item], interactions: Iterable[Interaction], directory: str | Path,
            config: RecommenderConfig | None = None, base_model: str = "bundled",
            callbacks: list | None = None) -> Recommender:
        """Fine-tune `base_model` on items that the same users liked (`goldmine.apps.recommend.finetune`) into
        `<directory>/model`, then `build` with it."""
        from goldmine.apps.recommend.finetune import finetune_encoder

        config = config or RecommenderConfig()
        interactions = list(interactions)
        items = _checked_items(items, set())
        model_dir = finetune_encoder(items, interactions, Path(directory) / MODEL_DIR, config.finetune,
                                     config.like_threshold, base_model, callbacks)
        return cls.build(items, interactions, directory, model_dir, config)

    @classmethod
    def load(cls, directory: str | Path, model_dir: str | Path | None = None) -> Recommender:
        """A saved recommender. `model_dir`: where its encoder is now (e.g. a registry's copy); it must be the very
        encoder the items were embedded with (checked by the digest of its files)."""
        directory = Path(directory)
        path = directory / META_FILE
        if not path.is_file():
            raise ConfigError(f"{directory} is not a recommender directory (no {META_FILE}); build one with "
                              "Recommender.build or Recommender.fit")
        meta = json.loads(path.read_text())
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{path}: format {meta.get('format')!r}, this goldmine reads format {FORMAT}")
        config = RecommenderConfig.from_dict(meta["config"])
        stored = Path(meta["model_dir"])
        model_dir = Path(model_dir) if model_dir is not None else (stored if stored.is_absolute()
                                                                   else directory / stored)
        index = Index.load(directory / INDEX_DIR)
        index.check_model(model_dir)
        index.meta["model_dir"] = str(model_dir)
        users: dict[str, list[Interaction]] = {}
        with (directory / USERS_FILE).open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                users[row["user_id"]] = [Interaction(row["user_id"], i, r, t) for i, r, t in
                                         zip(row["items"], row["ratings"], row["timestamps"], strict=True)]
        return cls(directory, config, index, users, BuildReport(**meta["report"]), model_dir)

    def save(self) -> None:
        """Write users and settings (the index saves itself), each through a temporary name."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"user_id": user, "items": [i.item_id for i in rows], "ratings": [i.rating for i in rows],
                             "timestamps": [i.timestamp for i in rows]}) + "\n" for user, rows in self.users.items()]
        _atomic(self.directory / USERS_FILE, "".join(lines))
        try:
            stored = str(self.model_dir.resolve().relative_to(self.directory.resolve()))
        except ValueError:
            stored = str(self.model_dir.resolve())
        meta = {"format": FORMAT, "config": self.config.model_dump(mode="json"), "model_dir": stored,
                "report": asdict(self.report), "index_version": self.index.meta["version"]}
        _atomic(self.directory / META_FILE, json.dumps(meta, indent=2))

    # ---- growing ----
    def add_items(self, items: Sequence[Item], model=None) -> None:
        """Make new items recommendable from their text alone (cold start): only they are embedded, nothing is
        rebuilt. Their popularity prior starts at zero; ids must be new (else nothing is added). `model`: the same
        encoder loaded elsewhere (a server's pool), checked by the index against the files it was built with."""
        with self.lock:
            items = _checked_items(items, set(self.row))
            self.index.add([_entry(item) for item in items], model=model or self.model)
            self._reindex()
            self.report.items = len(self.index.entries)
            self.save()

    def add_interactions(self, interactions: Iterable[Interaction]) -> BuildReport:
        """Record new interactions (a like, a rating) so that the next requests see them; returns what was added
        and skipped (items not in the catalog are counted, not an error)."""
        interactions = list(interactions)
        with self.lock:
            report = BuildReport()
            added = _users(interactions, set(self.row), report, self.config.like_threshold)
            for user, rows in added.items():
                self.users[user] = sorted([*self.users.get(user, []), *rows], key=lambda i: i.timestamp)
            self.report.users = len(self.users)
            self.report.interactions += report.interactions
            self.report.likes += report.likes
            self.report.unknown_item_interactions += report.unknown_item_interactions
            self._reindex()
            self.save()
            return report

    def configure(self, config: RecommenderConfig) -> None:
        """Answer with other settings from now on (an app config's); likes and popularity follow the new
        like threshold. Nothing is written: the saved settings change with the next save."""
        with self.lock:
            self.config = config
            self._reindex()

    # ---- answering ----
    def recommend(self, user_id: str | None = None, history: Sequence[str | Mapping | Interaction] | None = None,
                  k: int = 10, filters: Filters | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The `k` best items for a known user (`user_id`) or for a history given with the request (item ids
        oldest first, or {"item_id", "rating", "timestamp"} mappings; sorted by timestamp when every entry has one,
        else taken in the order given; no rating: a like): a list of
        {"item_id", "title", "score", "explanation": {"text", "similar_to": [{"item_id", "title", "similarity"}]}},
        best first. Fewer than `k` when the filters leave fewer items."""
        with self.lock:
            return self._recommend(user_id, history, k, filters)

    def _recommend(self, user_id, history, k, filters) -> list[dict[str, Any]]:
        if (user_id is None) == (history is None):
            raise InputError("give either user_id (a user the recommender knows) or history (item ids, oldest "
                             "first), not both and not neither")
        if isinstance(k, bool) or not isinstance(k, Integral) or not 1 <= k <= MAX_K:
            raise InputError(f"k: give a whole number from 1 to {MAX_K}, got {k!r}")
        chosen = Filters.parse(filters)
        events = self._events(user_id, history)
        liked = [self.row[i.item_id] for i in events if is_like(i, self.config.like_threshold)]
        allowed = self._allowed(chosen, {self.row[i.item_id] for i in events})
        if not allowed.any():
            return []
        if not liked:
            return self._popular(allowed, k)
        taste = self._taste(liked)
        rows, similarity = self._candidates(taste, allowed, max(k, self.config.candidates))
        scores = similarity + self.config.popularity_weight * self.prior[rows]
        picks = self._pick(rows, scores, k)
        return [self._answer(rows[p], float(scores[p]), liked) for p in picks]

    # ---- the steps of a request ----
    def _events(self, user_id: str | None, history) -> list[Interaction]:
        if user_id is not None:
            if str(user_id) not in self.users:
                raise UnknownUser(f"unknown user {user_id!r}: the recommender has no interactions of theirs; pass "
                                  "their history (item ids) instead, or add their interactions first")
            return self.users[str(user_id)]
        if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
            raise InputError("history: expected a list of item ids (oldest first) or of {item_id, rating, "
                             "timestamp} mappings")
        if len(history) > MAX_HISTORY:
            raise InputError(f"history: {len(history)} entries; the limit is {MAX_HISTORY} (send the most recent)")
        events = []
        for n, entry in enumerate(history):
            if isinstance(entry, Interaction):
                events.append(entry)
            elif isinstance(entry, str):
                events.append(Interaction("", entry, None, float(n)))
            elif isinstance(entry, Mapping) and entry.get("item_id") not in (None, ""):
                rating, timestamp = entry.get("rating"), entry.get("timestamp", n)
                if (rating is not None and not _finite(rating)) or not _finite(timestamp):
                    raise InputError(f"history[{n}]: rating and timestamp must be finite numbers")
                events.append(Interaction("", str(entry["item_id"]), None if rating is None else float(rating),
                                          float(timestamp)))
            else:
                raise InputError(f"history[{n}]: expected an item id or a mapping with item_id, got {entry!r:.80}")
        if unknown := list(dict.fromkeys(i.item_id for i in events if i.item_id not in self.row)):
            raise InputError(f"history: {len(unknown)} item id(s) not in the catalog: {unknown[:10]}; add the items "
                             "first (add_items) or leave them out")
        timed = all(isinstance(e, Interaction) or (isinstance(e, Mapping) and "timestamp" in e) for e in history)
        return sorted(events, key=lambda i: i.timestamp) if timed else events  # else: the order given

    def _allowed(self, filters: Filters, seen: set[int]) -> np.ndarray:
        allowed = np.ones(len(self.index.entries), dtype=bool)
        if filters.exclude_seen and seen:
            allowed[list(seen)] = False
        if filters.items is not None:
            only = np.zeros_like(allowed)
            only[[self.row[i] for i in filters.items if i in self.row]] = True
            allowed &= only
        if filters.exclude_items:
            allowed[[self.row[i] for i in filters.exclude_items if i in self.row]] = False
        if filters.categories is not None:
            wanted = np.zeros_like(allowed)
            for category in filters.categories:
                if category not in self.categories:
                    hint = get_close_matches(category, list(self.categories), n=1)
                    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                    raise InputError(f"filters.categories: no item has category {category!r}{suggestion}")
                wanted |= self.categories[category]
            allowed &= wanted
        return allowed

    def _taste(self, liked: list[int]) -> np.ndarray:
        """The user's taste: the (recency-weighted) mean of their liked items' unit vectors, unit length. (H,)"""
        vectors = self.index.vectors[liked]  # (L, H), oldest first
        half_life = self.config.recency_half_life
        weights = np.ones(len(liked)) if half_life is None else 0.5 ** (np.arange(len(liked))[::-1] / half_life)
        taste = weights @ vectors
        # float32 like the item vectors: a float64 taste would make numpy copy the whole (N, H) matrix per request
        return (taste / max(float(np.linalg.norm(taste)), 1e-12)).astype(np.float32)

    def _candidates(self, taste: np.ndarray, allowed: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine similarities) of the `count` allowed items most similar to `taste`. Exact (one matrix
        product) below the index's FAISS size; past it, FAISS's nearest `INDEX_MAX_K`, falling back to exact when
        the filters leave too few of those."""
        if self.index.meta.get("backend") == "faiss" and len(self.index.entries) >= FAISS_FROM:
            [hits] = self.index.search_vectors(taste[None], INDEX_MAX_K)
            rows = np.array([self.row[h.id] for h in hits], dtype=np.int64)
            keep = allowed[rows]
            if keep.sum() >= count:
                return rows[keep][:count], np.array([h.score for h in hits], dtype=np.float32)[keep][:count]
        # (N,): einsum's own loop, one thread. A BLAS matrix-vector product would spread this over every core, and
        # on a busy 2-core server its threads wait for each other: 11 ms against 1 ms for 10k items
        similarity = np.einsum("nh,h->n", self.index.vectors, taste)
        rows = np.flatnonzero(allowed)
        count = min(count, len(rows))
        top = rows[np.argpartition(-similarity[rows], count - 1)[:count]] if count < len(rows) else rows
        top = top[np.argsort(-similarity[top], kind="stable")]
        return top, similarity[top]

    def _pick(self, rows: np.ndarray, scores: np.ndarray, k: int) -> list[int]:
        """Positions in `rows` of the k picks: by score, or by maximal marginal relevance with `diversity`."""
        k = min(k, len(rows))
        if not self.config.diversity:
            return list(np.argsort(-scores, kind="stable")[:k])
        vectors = self.index.vectors[rows]  # (C, H)
        picks: list[int] = []
        closest = np.full(len(rows), -np.inf)  # each candidate's highest similarity to a pick so far
        for _ in range(k):
            penalty = np.where(np.isfinite(closest), closest, 0.0)
            value = (1 - self.config.diversity) * scores - self.config.diversity * penalty
            value[picks] = -np.inf
            best = int(np.argmax(value))
            picks.append(best)
            closest = np.maximum(closest, vectors @ vectors[best])
        return picks

    def _answer(self, row: int, score: float, liked: list[int]) -> dict[str, Any]:
        entry = self.index.entries[row]
        closest = []
        if self.config.explain:
            distinct = list(dict.fromkeys(liked))
            similarity = self.index.vectors[distinct] @ self.index.vectors[row]
            for n in np.argsort(-similarity, kind="stable")[: self.config.explain]:
                other = self.index.entries[distinct[n]]
                closest.append({"item_id": other.id, "title": other.payload.get("title", other.id),
                                "similarity": round(float(similarity[n]), 4)})
        text = "Because you liked " + " and ".join(c["title"] for c in closest) if closest else ""
        return {"item_id": entry.id, "title": entry.payload.get("title", entry.id), "score": round(score, 6),
                "explanation": {"text": text, "similar_to": closest}}

    def _popular(self, allowed: np.ndarray, k: int) -> list[dict[str, Any]]:
        rows = np.flatnonzero(allowed)
        rows = rows[np.argsort(-self.likes[rows], kind="stable")[:k]]
        return [{"item_id": self.index.entries[r].id, "title": self.index.entries[r].payload.get("title", ""),
                 "score": round(float(self.prior[r]), 6),
                 "explanation": {"text": f"Popular: liked by {int(self.likes[r])} user(s) (no liked items in "
                                         "this history yet)", "similar_to": []}} for r in rows]

    # ---- state derived from the index and the users ----
    @property
    def model(self):
        """The encoder, loaded on first use (only new items need it: requests read stored vectors)."""
        if self._model is None:
            self._model = _load_model(self.model_dir, self.config.batch_size)
        return self._model

    @property
    def items(self) -> list[Item]:
        return [Item.from_dict({"id": e.id, **e.payload}) for e in self.index.entries]

    def _reindex(self) -> None:
        """Rows of items, category masks, like counts and the popularity prior, from the index and the users."""
        self.row = {entry.id: n for n, entry in enumerate(self.index.entries)}
        self.categories: dict[str, np.ndarray] = {}
        for n, entry in enumerate(self.index.entries):
            for category in entry.payload.get("categories", []):
                self.categories.setdefault(category, np.zeros(len(self.row), dtype=bool))[n] = True
        self.likes = np.zeros(len(self.row), dtype=np.float64)
        for rows in self.users.values():
            for item in {i.item_id for i in rows if is_like(i, self.config.like_threshold)}:
                self.likes[self.row[item]] += 1
        most = self.likes.max(initial=0.0)
        prior = np.log1p(self.likes) / math.log1p(most) if most else np.zeros_like(self.likes)
        self.prior = prior.astype(np.float32)


def _entry(item: Item) -> Entry:
    payload = {"title": item.title, "categories": list(item.categories), "tags": list(item.tags),
               "description": item.description}
    return Entry(item.id, item.text(), payload)


def _checked_items(items: Sequence[Item], existing: set[str]) -> list[Item]:
    items = list(items)
    if not items:
        raise InputError("no items given")
    if bad := [i for i in items if not isinstance(i, Item)]:
        raise InputError(f"items: expected Item objects, got {type(bad[0]).__name__}")
    seen: set[str] = set()
    if clashes := sorted({i.id for i in items if i.id in existing or (i.id in seen or seen.add(i.id))}):
        raise InputError(f"item ids already in the catalog or given twice: {clashes[:10]}")
    if empty := [i.id for i in items if not i.title.strip()]:
        raise InputError(f"items without a title: {empty[:10]}")
    return items


def _users(interactions: Iterable[Interaction], known: set[str], report: BuildReport,
           like_threshold: float) -> dict[str, list[Interaction]]:
    users: dict[str, list[Interaction]] = {}
    for interaction in interactions:
        if interaction.item_id not in known:
            report.count_unknown(interaction.item_id)
            continue
        users.setdefault(interaction.user_id, []).append(interaction)
        report.interactions += 1
        report.likes += is_like(interaction, like_threshold)
    if report.unknown_item_interactions:
        log.warning("recommend: %d interaction(s) with items not in the catalog skipped (e.g. %s)",
                    report.unknown_item_interactions, report.unknown_items[:5])
    report.users = len(users)
    return {user: sorted(rows, key=lambda i: i.timestamp) for user, rows in users.items()}


def _load_model(model_dir: Path, batch_size: int):
    from goldmine.inference.model import Model

    model = Model.load(model_dir, batch_size=batch_size, runtime="torch")
    model.directory = Path(model_dir)
    return model


def _save_pretrained(base_model: str, out: Path, max_length: int) -> None:
    """The base encoder, untrained, as a goldmine retrieval model (reused when it is already there)."""
    from goldmine.config import load_config
    from goldmine.inference.model import RunMeta
    from goldmine.training.retrieval import save_pretrained_encoder

    if (out / "goldmine.json").is_file():
        meta = RunMeta.load(out)
        if meta.extra.get("pretrained") and meta.base_model == base_model and meta.max_length == max_length:
            return
        raise ConfigError(f"{out} holds another encoder ({meta.base_model}, "
                          f"{'untrained' if meta.extra.get('pretrained') else 'fine-tuned'}); pass it as model_dir "
                          "to build on it, or build in a new directory")
    save_pretrained_encoder(load_config(None, {"task": "retrieval", "output_dir": out, "model.name": base_model,
                                               "model.max_length": max_length}))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
