"""Serving settings: defaults, env vars, the YAML file, and field-named errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldmine.errors import ConfigError
from goldmine.serving.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("GOLDMINE_"):
            monkeypatch.delenv(name)


def test_defaults():
    s = load_settings()
    assert s.database_url == "sqlite:///runs/serving/goldmine.db"
    assert s.registry_dir == Path("runs/serving/models")
    assert s.redis_url is None and s.log_raw_inputs is False
    assert s.limits.max_items_per_call == 64 and s.batching.max_batch_size == 32
    assert isinstance(s.plans["default"].per_1k_tokens_minor, int)


def test_data_dir_moves_database_and_registry(tmp_path):
    s = load_settings(data_dir=tmp_path)
    assert s.database_url == f"sqlite:///{tmp_path}/goldmine.db"
    assert s.registry_dir == tmp_path / "models"


def test_env_vars_and_nesting(monkeypatch):
    monkeypatch.setenv("GOLDMINE_DATABASE_URL", "postgresql+psycopg://u@localhost/gm")
    monkeypatch.setenv("GOLDMINE_LIMITS__MAX_ITEMS_PER_CALL", "8")
    monkeypatch.setenv("GOLDMINE_PLANS", '{"default": {"per_call_minor": 5, "free_calls": 10}}')
    s = load_settings()
    assert s.database_url == "postgresql+psycopg://u@localhost/gm"
    assert s.limits.max_items_per_call == 8
    assert s.plans["default"].per_call_minor == 5 and s.plans["default"].free_calls == 10


def test_config_file_below_env(tmp_path, monkeypatch):
    path = tmp_path / "serving.yaml"
    path.write_text("port: 9001\nlimits:\n  max_chars_per_text: 50\nplans:\n  default: {per_call_minor: 3}\n"
                    "  pro: {currency: USD, per_1k_tokens_minor: 7}\n")
    s = load_settings(path)
    assert (s.port, s.limits.max_chars_per_text, s.plans["pro"].currency) == (9001, 50, "USD")
    monkeypatch.setenv("GOLDMINE_PORT", "9002")
    assert load_settings(path).port == 9002
    monkeypatch.setenv("GOLDMINE_CONFIG", str(path))
    assert load_settings().limits.max_chars_per_text == 50


@pytest.mark.parametrize(("overrides", "message"), [
    ({"batching": {"max_batch_size": 0}}, "batching.max_batch_size: Input should be greater than 0"),
    ({"plans": {"default": {"per_call_minor": 1.5}}}, "plans.default.per_call_minor"),
    ({"plans": {"pro": {}}}, "a plan named 'default' is required"),
    ({"no_such": 1}, "no_such: Extra inputs are not permitted"),
])
def test_invalid_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match="invalid serving settings") as err:
        load_settings(**overrides)
    assert message in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="serving config file not found"):
        load_settings(tmp_path / "nope.yaml")
