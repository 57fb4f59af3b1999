"""`goldmine app recommend ...`: save an encoder, build or fit the state, recommend, add items and interactions,
show, demo. Each command is a few lines over `goldmine.apps.recommend.api` (the same functions the HTTP routes
call); answers are printed as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from goldmine.apps.cli import AppConfigOpt, ConfigOpt, app_config, console, err_console, fail, serving
from goldmine.errors import GoldmineError

app = typer.Typer(help="Text-based recommender: build from items and interactions, recommend with explanations, "
                  "add items (cold start) and interactions.", no_args_is_help=True)
APP = "recommend"

ItemsOpt = Annotated[Path | None, typer.Option("--items", help="Items: JSONL, CSV or TSV (id, title, categories, "
                                               "tags, description).")]
InteractionsOpt = Annotated[Path | None, typer.Option("--interactions", help="Interactions: JSONL, CSV or TSV "
                                                      "(user_id, item_id, rating?, timestamp?).")]
MovieLensOpt = Annotated[Path | None, typer.Option("--movielens", help="A MovieLens directory (movies.csv, "
                                                   "ratings.csv, tags.csv) instead of --items/--interactions.")]
LenientOpt = Annotated[bool, typer.Option("--lenient", help="Skip bad lines (each printed as a warning) instead of "
                                          "refusing the files.")]


def _show(result) -> None:
    console.print_json(json.dumps(result, ensure_ascii=False))


def _catalog(items: Path | None, interactions: Path | None, movielens: Path | None, lenient: bool):
    from goldmine.apps.recommend.api import read_catalog

    found, events, issues = read_catalog(items, interactions, movielens, strict=not lenient)
    for issue in issues:
        err_console.print(f"[yellow]warning:[/] {escape(str(issue))}", highlight=False)
    return found, events


def _opened(app_config_file: Path | None, config: Path | None):
    from goldmine.apps.recommend.api import RecommendApp

    settings, db = serving(config)
    try:
        return RecommendApp.open(app_config(APP, app_config_file, settings), db)
    except GoldmineError as err:
        fail(err)
    raise AssertionError  # fail exits


@app.command("save-encoder")
def save_encoder(out: Annotated[Path, typer.Argument(help="Where to save it (then `goldmine models register NAME "
                                                         "OUT --tenant TENANT`).")],
                 base_model: Annotated[str, typer.Option("--base-model", help="'bundled' or a local model "
                                                         "directory.")] = "bundled") -> None:
    """Save the base encoder, untrained, as a model the registry takes: a recommender without fine-tuning."""
    from goldmine.apps.recommend.api import save_base_encoder

    try:
        console.print(f"saved {save_base_encoder(out, base_model)}")
    except GoldmineError as err:
        fail(err)


@app.command("build")
def build(items: ItemsOpt = None, interactions: InteractionsOpt = None, movielens: MovieLensOpt = None,
          lenient: LenientOpt = False, app_config_file: AppConfigOpt = None, config: ConfigOpt = None) -> None:
    """Embed the items with the encoder the app config names and record the interactions in its state_dir
    (replacing what was there). Interactions with items outside the catalog are counted, not fatal."""
    from goldmine.apps.recommend import api

    settings, db = serving(config)
    try:
        found, events = _catalog(items, interactions, movielens, lenient)
        _show(api.build(app_config(APP, app_config_file, settings), db, found, events).describe())
    except GoldmineError as err:
        fail(err)


@app.command("fit")
def fit(items: ItemsOpt = None, interactions: InteractionsOpt = None, movielens: MovieLensOpt = None,
        lenient: LenientOpt = False,
        base_model: Annotated[str, typer.Option("--base-model", help="'bundled' or a local model directory.")]
        = "bundled",
        steps: Annotated[int | None, typer.Option("--steps", min=1, help="Fine-tuning steps (default: the "
                                                  "config's epochs).")] = None,
        app_config_file: AppConfigOpt = None, config: ConfigOpt = None) -> None:
    """Fine-tune the encoder on items the same users liked, register it as a new version of the config's model
    (its alias follows), then build the state on it."""
    from goldmine.apps.recommend import api

    settings, db = serving(config)
    try:
        loaded = app_config(APP, app_config_file, settings)
        if steps is not None:
            loaded.recommender.finetune.max_steps = steps
        found, events = _catalog(items, interactions, movielens, lenient)
        recommender, version = api.fit(loaded, db, settings.registry_dir, found, events, base_model)
        _show({"registered": {"name": loaded.models.encoder.name, "version": version}, **recommender.describe()})
    except GoldmineError as err:
        fail(err)


@app.command("recommend")
def recommend(user: Annotated[str | None, typer.Argument(help="A user id the state knows.")] = None,
              history: Annotated[str | None, typer.Option("--history", help="Instead of a user: liked item ids, "
                                                          "oldest first, comma-separated.")] = None,
              k: Annotated[int | None, typer.Option("--k", help="How many (default: the config's default_k).")]
              = None,
              category: Annotated[list[str] | None, typer.Option("--category", help="Only items of this category "
                                                                 "(repeat for several).")] = None,
              exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Never this item id (repeat).")]
              = None,
              include_seen: Annotated[bool, typer.Option("--include-seen", help="Also items the user has seen.")]
              = False,
              app_config_file: AppConfigOpt = None, config: ConfigOpt = None) -> None:
    """Recommendations for a user or a history, best first, each explained by the liked items it is closest to."""
    opened = _opened(app_config_file, config)
    filters = {"exclude_seen": not include_seen, "categories": category or None, "exclude_items": exclude or []}
    wanted = [h.strip() for h in history.split(",") if h.strip()] if history is not None else None
    try:
        _show(opened.recommend(user_id=user, history=wanted, k=k, filters=filters))
    except GoldmineError as err:
        fail(err)


@app.command("add-items")
def add_items(items: Annotated[Path, typer.Argument(help="Items file: JSONL, CSV or TSV.")],
              app_config_file: AppConfigOpt = None, config: ConfigOpt = None) -> None:
    """Add new items, recommendable at once from their text (cold start); an id already there refuses the file."""
    opened = _opened(app_config_file, config)
    try:
        found, _ = _catalog(items, None, None, False)
        _show(opened.add_items(found))
    except GoldmineError as err:
        fail(err)


@app.command("add-interactions")
def add_interactions(interactions: Annotated[Path, typer.Argument(help="Interactions file: JSONL, CSV or TSV "
                                                                  "(user_id, item_id, rating?, timestamp?).")],
                     lenient: LenientOpt = False, app_config_file: AppConfigOpt = None,
                     config: ConfigOpt = None) -> None:
    """Record new interactions; those with items outside the catalog are counted warnings, the rest kept."""
    from goldmine.apps.recommend.data import read_interactions

    opened = _opened(app_config_file, config)
    try:
        events, report = read_interactions(interactions, strict=not lenient)
        for issue in report.issues:
            err_console.print(f"[yellow]warning:[/] {escape(str(issue))}", highlight=False)
        result = opened.add_interactions(events)
    except GoldmineError as err:
        fail(err)
    for warning in result["warnings"]:
        examples = escape(str(warning["examples"]))
        err_console.print(f"[yellow]warning:[/] {escape(warning['message'])} (e.g. {examples})", highlight=False)
    _show(result)


@app.command("show")
def show(app_config_file: AppConfigOpt = None, config: ConfigOpt = None) -> None:
    """The state: items, users, what building skipped, and the encoder version it is embedded with."""
    _show(_opened(app_config_file, config).describe())


@app.command("demo")
def demo(out: Annotated[Path, typer.Option("--out", help="Where the demo writes data, encoder, database and state.")]
         = Path("recommend-demo"),
         base_model: Annotated[str, typer.Option("--base-model", help="'bundled' or a local model directory.")]
         = "bundled",
         k: Annotated[int, typer.Option("--k", min=1, max=20, help="Recommendations per reader.")] = 5) -> None:
    """Offline: a bookshop this code writes (6 shelves, 40 readers) -> a registered encoder, an app config, the
    state -> readers' recommendations with explanations -> a new book, recommended from its text alone."""
    from goldmine.apps.recommend.demo import run_app_demo

    try:
        shown = run_app_demo(out, base_model, k=k)
    except GoldmineError as err:
        fail(err)
    for title, answers in (("recommendations", shown["recommendations"]),
                           (f"after adding {shown['new_item']['title']!r}", shown["after_new_item"])):
        console.print(f"[bold]{escape(title)}[/]")
        for user, picks in answers.items():
            console.print(f"  reader {escape(user)}:")
            for pick in picks:
                console.print(f"    {escape(pick['title'])} ({pick['score']:.3f}) "
                              f"[dim]{escape(pick['explanation']['text'])}[/]", highlight=False)
    console.print(escape(f"app config: {shown['app_config']}; serve it with GOLDMINE_DATA_DIR={out / 'serving'} "
                         f"and the serving setting apps: [{shown['app_config']}]"), highlight=False)
