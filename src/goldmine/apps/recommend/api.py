"""The recommender app's Python API: a tenant's `Recommender`, its state in the config's `state_dir`, its encoder
from the serving registry. The CLI commands and the HTTP routes call these functions and nothing else.

    config = load_app_config("configs/apps/recommend.yaml", "recommend")
    app = build(config, db, items, interactions)        # embed the catalog with the registered encoder
    app = fit(config, db, settings.registry_dir, items, interactions)   # fine-tune, register, then build
    app = RecommendApp.open(config, db)                   # the state as built, on the version the config names now
    app.recommend(user_id="42", k=5, filters={"categories": ["Comedy"]})
    app.add_items([Item("new-1", "A new film", ("Drama",))])
    app.add_interactions([Interaction("42", "new-1", 5.0, 1_700_000_000)])

Why the state is checked on every call: the CLI (`goldmine app recommend add-items`) and a running server may
both hold the same state directory. Each addition takes an exclusive file lock on `<state_dir>/.lock` (across
processes; the recommender's own `threading.Lock` orders the threads of one process), reloads the state when
another process saved it since (the stamp of `recommender.json`, the file every save writes last), then changes and
saves it: no process writes over additions it has not seen. A request reloads a state changed elsewhere too, so it
answers with what the last addition saved.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from goldmine.apps.base import ResolvedModel, resolve_models
from goldmine.apps.recommend.config import RecommendConfig
from goldmine.apps.recommend.data import Interaction, Item, ReadReport, read_interactions, read_items, read_movielens
from goldmine.apps.recommend.recommender import META_FILE, BuildReport, Filters, Recommender
from goldmine.errors import ConfigError, DataIssue, InputError
from goldmine.retrieval.index import IndexUnusable

log = logging.getLogger(__name__)
ENCODER = "models.encoder"
LOCK_FILE = ".lock"
RUNS_DIR = "encoder-runs"  # fine-tuned encoders, before registration, inside the state directory


class StateMissing(ConfigError):
    """The config's state directory holds no recommender yet (`goldmine app recommend build` makes one)."""


def read_catalog(items: str | Path | None = None, interactions: str | Path | None = None,
                 movielens: str | Path | None = None, strict: bool = True
                 ) -> tuple[list[Item], list[Interaction], list[DataIssue]]:
    """Items and interactions from files (see `data.py`): an items file and an optional interactions file, or a
    MovieLens directory. Returns them and the warnings of the lines left out (`strict=False`; else a DataError)."""
    if (movielens is None) == (items is None):
        raise InputError("give an items file (and an interactions file), or a MovieLens directory, not both")
    if movielens is not None:
        found, events, report = read_movielens(movielens, strict)
        return found, events, report.issues
    found, report = read_items(items, strict)
    events, events_report = read_interactions(interactions, strict) if interactions is not None \
        else ([], ReadReport())
    return found, events, [*report.issues, *events_report.issues]


def _stamp(directory: Path) -> tuple[int, int] | None:
    """What identifies the last save: `recommender.json`'s inode and mtime (every save renames a new one in)."""
    try:
        status = (directory / META_FILE).stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns


@contextlib.contextmanager
def _file_lock(directory: Path) -> Iterator[None]:
    """An exclusive lock on `<directory>/.lock`, held by one process at a time (released when the file closes)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _open_state(config: RecommendConfig, encoder: ResolvedModel) -> Recommender:
    """The recommender of `state_dir` on `encoder`'s registry copy, embedded again when it was built with another
    encoder (items and interactions kept), answering with the app config's settings."""
    directory = config.state_path()
    if not (directory / META_FILE).is_file():
        raise StateMissing(f"{config.where('state_dir')}: state_dir: {directory} holds no recommender yet; build it "
                           "with `goldmine app recommend build --items ITEMS --interactions INTERACTIONS`")
    try:
        recommender = Recommender.load(directory, encoder.path)
    except IndexUnusable:
        try:
            old = Recommender.load(directory, _stored_model_dir(directory))
        except IndexUnusable as err:
            raise ConfigError(f"{directory}: the state was embedded with an encoder that is gone ({err}); build it "
                              "again from the items and interactions files") from None
        log.warning("recommend: %s was embedded with another encoder; embedding its %d items again with %s "
                    "version %s", directory, len(old.index.entries), encoder.name, encoder.version)
        events = [event for rows in old.users.values() for event in rows]
        recommender = Recommender.build(old.items, events, directory, encoder.path, config.recommender)
        recommender.report.unknown_item_interactions = old.report.unknown_item_interactions
        recommender.report.unknown_items = old.report.unknown_items
        recommender.save()
    recommender.configure(config.recommender)
    return recommender


def _stored_model_dir(directory: Path) -> Path:
    """The encoder the state was saved with (its registry copy stays: versions are never deleted under it)."""
    stored = Path(json.loads((directory / META_FILE).read_text())["model_dir"])
    return stored if stored.is_absolute() else directory / stored


class RecommendApp:
    """A tenant's recommender as its app config describes it. Thread-safe: share one per config."""

    def __init__(self, config: RecommendConfig, encoder: ResolvedModel, recommender: Recommender):
        self.config, self.encoder, self.recommender = config, encoder, recommender
        self._stamp = _stamp(recommender.directory)
        self._reload = threading.Lock()

    @classmethod
    def open(cls, config: RecommendConfig, db) -> RecommendApp:
        """Resolve the encoder (a ConfigError naming the config line for a version the registry lacks) and open
        the state built over it (a StateMissing saying how to build it)."""
        return cls.on(config, resolve_models(config, db)[ENCODER])

    @classmethod
    def on(cls, config: RecommendConfig, encoder: ResolvedModel) -> RecommendApp:
        """The state on an encoder version resolved elsewhere (a server resolves it through its alias cache)."""
        with _file_lock(config.state_path()):
            return cls(config, encoder, _open_state(config, encoder))

    @property
    def directory(self) -> Path:
        return self.recommender.directory

    def _fresh(self) -> Recommender:
        """The recommender, reloaded when another process saved the state since this one last read or wrote it."""
        with self._reload:
            if _stamp(self.directory) != self._stamp:
                log.info("recommend: %s changed on disk; reloading it", self.directory)
                loaded = self.recommender._model  # the same encoder files: no need to load them again
                self.recommender = _open_state(self.config, self.encoder)
                self.recommender._model = self.recommender._model or loaded
                self._stamp = _stamp(self.directory)
            return self.recommender

    @contextlib.contextmanager
    def _changing(self) -> Iterator[Recommender]:
        """The fresh recommender to change, under the state's file lock; the stamp follows its save."""
        with _file_lock(self.directory):
            recommender = self._fresh()
            try:
                yield recommender
            finally:
                with self._reload:
                    if self.recommender is recommender:
                        self._stamp = _stamp(self.directory)

    # ---- what a customer calls ----
    def recommend(self, user_id: str | None = None, history: Sequence[str | Mapping] | None = None,
                  k: int | None = None, filters: Filters | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """`Recommender.recommend` with the config's default k: best first, each with its explanation."""
        return self._fresh().recommend(user_id=user_id, history=history, k=self.config.default_k if k is None else k,
                                       filters=filters)

    def add_items(self, items: Sequence[Item], model=None) -> dict[str, Any]:
        """New items, recommendable at once from their text (cold start). An id already in the catalog or given
        twice is an InputError and nothing is added."""
        items = list(items)
        with self._changing() as recommender:
            recommender.add_items(items, model=model)
            return {"added": len(items), "items": len(recommender.index.entries)}

    def add_interactions(self, interactions: Iterable[Interaction]) -> dict[str, Any]:
        """New interactions; those with items outside the catalog are counted as warnings, the others kept."""
        interactions = list(interactions)
        if not interactions:
            raise InputError("no interactions given")
        with self._changing() as recommender:
            report = recommender.add_interactions(interactions)
            return added_report(report, len(recommender.users))

    def describe(self) -> dict[str, Any]:
        """The state's counts and the encoder version it is embedded with."""
        recommender = self._fresh()
        return {"state_dir": str(self.directory), "encoder": {"name": self.encoder.name,
                                                              "version": self.encoder.version},
                "items": len(recommender.index.entries), "users": len(recommender.users),
                "report": asdict(recommender.report)}


def added_report(report: BuildReport, users: int) -> dict[str, Any]:
    """What an addition of interactions kept and skipped: unknown items as a counted warning, with examples."""
    out: dict[str, Any] = {"added": report.interactions, "likes": report.likes, "users": users,
                           "warnings": []}
    if report.unknown_item_interactions:
        out["warnings"].append({"kind": "unknown_items", "count": report.unknown_item_interactions,
                                "examples": report.unknown_items,
                                "message": f"{report.unknown_item_interactions} interaction(s) with items not in the "
                                           "catalog skipped: add the items first (POST items / add-items)"})
    return out


def build(config: RecommendConfig, db, items: Sequence[Item], interactions: Iterable[Interaction]) -> RecommendApp:
    """Embed `items` with the encoder the config names and record `interactions` in `state_dir` (replacing what
    was there). Interactions with unknown items are counted in the report, not fatal."""
    encoder = resolve_models(config, db)[ENCODER]
    directory = config.state_path()
    with _file_lock(directory):
        recommender = Recommender.build(items, interactions, directory, encoder.path, config.recommender)
        return RecommendApp(config, encoder, recommender)


def fit(config: RecommendConfig, db, registry_dir: str | Path, items: Sequence[Item],
        interactions: Iterable[Interaction], base_model: str = "bundled", callbacks: list | None = None
        ) -> tuple[RecommendApp, str]:
    """Fine-tune `base_model` on co-liked items (`recommender.finetune`), register the encoder under the config's
    model name (a new version of it), move the config's alias to it, and `build` on it. A config that pins a
    version id is left alone: the new version is registered and returned, and the state is built on the pinned
    one (edit the config's line to use the new one). Returns the app and the new version id."""
    from goldmine.apps.recommend.finetune import finetune_encoder
    from goldmine.serving.registry import promote, register

    ref = config.models.encoder
    interactions = list(interactions)
    run_dir = config.state_path() / RUNS_DIR / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run = finetune_encoder(list(items), interactions, run_dir,
                           config.recommender.finetune, config.recommender.like_threshold, base_model, callbacks)
    version = register(db, registry_dir, ref.name, run, config.tenant).version
    if ref.version != version and not _is_version(db, ref.name, ref.version):  # an alias: it follows
        promote(db, ref.name, version, ref.version, config.tenant)
    return build(config, db, items, interactions), version


def save_base_encoder(out: str | Path, base_model: str = "bundled", max_length: int = 64) -> Path:
    """`base_model` untrained, saved as a goldmine retrieval model that `goldmine models register` takes: the
    encoder of a recommender built without fine-tuning."""
    from goldmine.apps.recommend.recommender import _save_pretrained

    out = Path(out)
    _save_pretrained(base_model, out, max_length)
    return out


def _is_version(db, name: str, ref: str) -> bool:
    """Whether `ref` is a version id of `name` (else it is an alias, existing or to be made)."""
    from sqlalchemy import select

    from goldmine.serving.db import ModelVersion

    with db.session() as session:
        return session.scalar(select(ModelVersion.version).where(ModelVersion.model_name == name,
                                                                 ModelVersion.version == ref)) is not None


def parse_interactions(rows: Iterable[Mapping[str, Any]], where: str = "interactions") -> list[Interaction]:
    """Interactions from mappings ({user_id, item_id, rating?, timestamp?}), e.g. a request's JSON; a bad one is an
    InputError naming its position."""
    from goldmine.apps.recommend.recommender import _finite

    out = []
    for n, row in enumerate(rows):
        user, item = row.get("user_id"), row.get("item_id")
        if user in (None, "") or item in (None, ""):
            raise InputError(f"{where}[{n}]: give user_id and item_id")
        rating, timestamp = row.get("rating"), row.get("timestamp")
        if (rating is not None and not _finite(rating)) or (timestamp is not None and not _finite(timestamp)):
            raise InputError(f"{where}[{n}]: rating and timestamp must be finite numbers")
        out.append(Interaction(str(user), str(item), None if rating is None else float(rating),
                               float(timestamp) if timestamp is not None else time.time()))
    return out

