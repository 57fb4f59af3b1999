"""`goldmine app ...`: the apps' command lines, one Typer group per app (`goldmine app monitor ingest ...`), plus
`goldmine app list` and `goldmine app check CONFIG`.

Each app's commands are thin, as the platform's are: a few lines over its Python API. The helpers here give them
the same error display and the same way to the serving settings, database and app config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from goldmine.apps.base import AppConfig, app_names, get_app, load_app_config, resolve_models
from goldmine.errors import ConfigError, GoldmineError

app = typer.Typer(help="The applications built on goldmine: list, check a config, and each app's own commands.",
                  no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error line stays one line in a log, whatever its length

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Serving config YAML (else $GOLDMINE_CONFIG).")]
AppConfigOpt = Annotated[Path | None, typer.Option(
    "--app-config", help="The app's config YAML (default: the one for this app in the serving setting `apps`).")]


def fail(err: GoldmineError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)
    raise typer.Exit(2)


def serving(config: Path | None):
    """Serving settings and the migrated database, or exit 2 with the reason."""
    from goldmine.serving.db import open_database
    from goldmine.serving.settings import load_settings

    try:
        settings = load_settings(config)
        return settings, open_database(settings)
    except GoldmineError as err:
        fail(err)


def app_config(name: str, path: Path | None, settings) -> AppConfig:
    """The config of app `name`: `path`, else the only one the serving settings list for it."""
    if path is None:
        candidates = []
        for listed in settings.apps:
            try:
                if load_app_config(listed).app == name:
                    candidates.append(listed)
            except GoldmineError:
                continue
        if len(candidates) != 1:
            found = f"several ({', '.join(map(str, candidates))})" if candidates else "none"
            fail(ConfigError(f"give --app-config: the serving setting `apps` lists {found} for app {name!r}"))
        path = candidates[0]
    try:
        return load_app_config(path, name)
    except GoldmineError as err:
        fail(err)
    raise AssertionError  # fail exits


@app.command("list")
def list_apps(config: ConfigOpt = None) -> None:
    """The apps, and the app configs the serving settings serve (app, tenant, file)."""
    from goldmine.serving.settings import load_settings

    for name in app_names():
        console.print(f"[bold]{name}[/]: {get_app(name).summary}")
    try:
        settings = load_settings(config)
    except GoldmineError:
        return
    for path in settings.apps:
        try:
            loaded = load_app_config(path)
            console.print(f"  served: {loaded.app} for tenant {loaded.tenant} ({path})")
        except GoldmineError as err:
            console.print(f"  [red]broken[/]: {escape(str(err))}", highlight=False)


@app.command("check")
def check(app_config_file: Annotated[Path, typer.Argument(help="An app config YAML.")],
          config: ConfigOpt = None) -> None:
    """Validate an app config and resolve its models in the registry (exit 2 with file:line if anything is off)."""
    try:
        loaded = load_app_config(app_config_file)
    except GoldmineError as err:
        fail(err)
    _, db = serving(config)
    try:
        resolved = resolve_models(loaded, db)
    except GoldmineError as err:
        fail(err)
    for field, model in resolved.items():
        console.print(f"{field}: {model.name} -> version {model.version}")
    console.print(f"[green]ok[/]: {loaded.app} app config for tenant {loaded.tenant}")


for _name in app_names():
    _spec = get_app(_name)
    app.add_typer(_spec.load("cli"), name=_name, help=_spec.summary)
