"""App configs: every shipped one loads; errors name file:line; model references resolve against the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldmine.apps.base import ModelRef, load_app_config, resolve_models, yaml_line
from goldmine.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "apps"


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_app_configs_load(path):
    config = load_app_config(path)
    assert config.source == str(path) and config.model_refs()
    assert all(isinstance(ref, ModelRef) for ref in config.model_refs().values())


def test_model_refs_by_dotted_field(echo_app, echo_config):
    config = load_app_config(echo_config(models={"classifier": {"name": "intents", "version": "staging"},
                                                 "spare": {"name": "tickets"}}))
    refs = config.model_refs()
    assert {f: (r.name, r.version) for f, r in refs.items()} == {
        "models.classifier": ("intents", "staging"), "models.spare": ("tickets", "production")}
    assert config.where("models.spare").endswith("echo.yaml:7")


def test_errors_name_the_file_and_line(echo_app, echo_config, tmp_path):
    bad = echo_config(models={"classifier": {"name": "intents", "versoin": "v1"}}, greeting=3)
    with pytest.raises(ConfigError) as err:
        load_app_config(bad)
    message = str(err.value)
    assert f"{bad}:6: models.classifier.versoin: Extra inputs are not permitted" in message
    assert f"{bad}:7: greeting: Input should be a valid string" in message
    with pytest.raises(ConfigError, match=r"echo.yaml:1: app: unknown app 'ecko'.*did you mean 'echo'"):
        load_app_config(echo_config(app="ecko"))
    with pytest.raises(ConfigError, match="configures 'echo', not 'monitor'"):
        load_app_config(echo_config(), app="monitor")
    (tmp_path / "broken.yaml").write_text("app: echo\ntenant: [acme\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:3: not valid YAML"):
        load_app_config(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="app config file not found"):
        load_app_config(tmp_path / "missing.yaml")


def test_resolve_models_against_the_registry(echo_app, echo_config, db, models):
    config = load_app_config(echo_config())
    [resolved] = resolve_models(config, db).values()
    assert (resolved.name, resolved.version) == ("intents", models["intents"].version)
    missing_version = load_app_config(echo_config(models={"classifier": {"name": "intents", "version": "v9"}}))
    with pytest.raises(ConfigError) as err:
        resolve_models(missing_version, db)
    assert f"echo.yaml:4: models.classifier: model 'intents' has no alias or version 'v9' (versions: " \
           f"{models['intents'].version}; aliases: production)" in str(err.value)
    foreign = load_app_config(echo_config(models={"classifier": {"name": "other"}}))  # globex's model
    with pytest.raises(ConfigError, match="register one with `goldmine models register other RUN_DIR --tenant acme`"):
        resolve_models(foreign, db)


def test_yaml_line_follows_keys_and_indexes(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nb:\n  - {c: 2}\n  - d: 3\n    e: 4\n")
    assert [yaml_line(path, loc) for loc in ([], ["a"], ["b", 1, "e"], ["b", 0, "c"], ["zz"])] == [1, 1, 5, 3, 1]
