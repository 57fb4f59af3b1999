"""Serving fixtures: settings on a temporary SQLite file, a migrated database, tiny registered models, keys."""

from __future__ import annotations

import pytest

from goldmine.serving.auth import create_key
from goldmine.serving.db import open_database
from goldmine.serving.registry import register
from goldmine.serving.settings import load_settings


@pytest.fixture
def settings(tmp_path, monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("GOLDMINE_"):
            monkeypatch.delenv(name)
    return load_settings(data_dir=tmp_path / "serving", preload=False, inference_threads=1)


@pytest.fixture
def db(settings):
    database = open_database(settings)
    yield database
    database.dispose()


@pytest.fixture
def models(db, settings, tiny_run):
    """Tenant `acme` owns `intents` (classification) and `tickets` (NER); tenant `globex` owns `other`."""
    return {
        "intents": register(db, settings.registry_dir, "intents", tiny_run("classification"), "acme"),
        "tickets": register(db, settings.registry_dir, "tickets", tiny_run("ner"), "acme"),
        "other": register(db, settings.registry_dir, "other", tiny_run("classification"), "globex"),
    }


@pytest.fixture
def keys(db):
    """Raw keys by role: acme predict, acme admin, globex predict."""
    return {
        "acme": create_key(db, "acme", "predict").key,
        "admin": create_key(db, "acme", "predict,admin").key,
        "globex": create_key(db, "globex", "predict").key,
        "admin_only": create_key(db, "ops", "admin").key,
    }
