"""`goldmine app list` and `goldmine app check`: apps, served configs, and a config's models resolved."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from goldmine.cli import app


def serving_config(tmp_path, settings, apps=()) -> str:
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(settings.data_dir), "database_url": settings.url,
                                    "apps": [str(a) for a in apps]}))
    return str(path)


def test_list_and_check(echo_app, echo_config, settings, db, models, tmp_path):
    good = echo_config()
    bad = echo_config("bad.yaml", models={"classifier": {"name": "intents", "version": "v9"}})
    config = serving_config(tmp_path, settings, [good])
    runner = CliRunner()
    listed = runner.invoke(app, ["app", "list", "--config", config])
    assert listed.exit_code == 0 and "echo: Says hello and classifies." in listed.output
    assert f"served: echo for tenant acme ({good})" in listed.output.replace("\n", "")
    checked = runner.invoke(app, ["app", "check", str(good), "--config", config])
    assert checked.exit_code == 0, checked.output
    assert f"models.classifier: intents -> version {models['intents'].version}" in checked.output
    failed = runner.invoke(app, ["app", "check", str(bad), "--config", config])
    assert failed.exit_code == 2 and "bad.yaml:4: models.classifier: model 'intents' has no alias or version 'v9'" \
        in " ".join(failed.output.split())
    unknown = runner.invoke(app, ["app", "check", str(echo_config("x.yaml", app="nope")), "--config", config])
    assert unknown.exit_code == 2 and "unknown app 'nope'" in " ".join(unknown.output.split())  # rich wraps
