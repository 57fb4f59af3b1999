"""Console fixtures: the serving fixtures (settings on a temporary SQLite file, a migrated database, keys, tiny
registered models, a real server process) shared from tests/serving/conftest.py, and a signed-in TestClient."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from goldmine.serving.app import create_app
from goldmine.serving.settings import load_settings

_spec = importlib.util.spec_from_file_location("goldmine_tests_serving_fixtures_console",
                                               Path(__file__).parents[1] / "serving" / "conftest.py")
serving_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serving_fixtures)

backend = serving_fixtures.backend
db = serving_fixtures.db
keys = serving_fixtures.keys
models = serving_fixtures.models
start_server = serving_fixtures.start_server

@pytest.fixture
def settings(tmp_path, monkeypatch, tiny_model_dir):
    """The serving test settings, with jobs that start from the tiny random BERT (as tests/serving/test_jobs.py)."""
    for name in list(os.environ):
        if name.startswith("GOLDMINE_"):
            monkeypatch.delenv(name)
    return load_settings(data_dir=tmp_path / "serving", preload=False, inference_threads=1,
                         plans={"default": {"per_1k_tokens_minor": 10, "per_cpu_hour_minor": 3_600_000}},
                         jobs={"base_models": [str(tiny_model_dir)], "heartbeat_seconds": 0.3, "lease_seconds": 30,
                               "poll_seconds": 0.2})


CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = CSRF.search(html)
    assert match, html[:2000]
    return match[1]


@pytest.fixture
def app(settings, db):
    return create_app(settings)


@pytest.fixture
def browser(app):
    """`browser(key)`: a TestClient signed in to the console with `key`, each with its own cookies (one lifespan,
    run by a first client, serves them all)."""
    with TestClient(app):
        def sign_in(key: str | None) -> TestClient:
            client = TestClient(app, follow_redirects=False)
            if key is not None:
                form = client.get("/console/login")
                response = client.post("/console/login", data={"key": key, "csrf": csrf_of(form.text)})
                assert response.status_code == 303, response.text
            return client

        yield sign_in
