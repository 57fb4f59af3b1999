"""`goldmine app support ...`: ask, correct, show a conversation, demo. Each command is a few lines over
`goldmine.apps.support.assistant` (the same functions the HTTP routes call)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from goldmine.apps.cli import AppConfigOpt, ConfigOpt, app_config, console, fail, serving
from goldmine.errors import GoldmineError

app = typer.Typer(help="Customer-service assistant: answer messages, hand off to a person, store corrections.",
                  no_args_is_help=True)


def _show(result: dict) -> None:
    console.print_json(json.dumps(result, ensure_ascii=False))


@app.command("ask")
def ask(message: Annotated[str, typer.Argument(help="The customer's message.")],
        conversation: Annotated[str | None, typer.Option("--conversation", help="Continue this conversation.")] = None,
        app_config_file: AppConfigOpt = None, config: ConfigOpt = None) -> None:
    """Answer one message (or hand it off), store the turn masked, print the reply as JSON."""
    from goldmine.apps.support.assistant import Assistant

    settings, db = serving(config)
    try:
        _show(Assistant.from_config(app_config("support", app_config_file, settings), db).handle(conversation,
                                                                                                 message))
    except GoldmineError as err:
        fail(err)


@app.command("correct")
def correct(turn_id: Annotated[int, typer.Argument(help="The turn to mark wrong (a reply's turn_id).")],
            agent: Annotated[str, typer.Option("--agent", help="Who corrects.")],
            intent: Annotated[str | None, typer.Option("--intent", help="The right intent.")] = None,
            answer: Annotated[str | None, typer.Option("--answer", help="The right answer.")] = None,
            app_config_file: AppConfigOpt = None, config: ConfigOpt = None) -> None:
    """Store an agent's correction of a reply (the right intent and/or answer)."""
    from goldmine.apps.support.assistant import mark_wrong

    settings, db = serving(config)
    try:
        _show(mark_wrong(db, app_config("support", app_config_file, settings), turn_id, intent, answer, agent))
    except GoldmineError as err:
        fail(err)


@app.command("conversation")
def conversation(conversation_id: Annotated[str, typer.Argument(help="A conversation id.")],
                 app_config_file: AppConfigOpt = None, config: ConfigOpt = None) -> None:
    """A conversation as stored (messages masked), with its corrections."""
    from goldmine.apps.support.store import conversation as stored

    settings, db = serving(config)
    try:
        _show(stored(db, app_config("support", app_config_file, settings).tenant, conversation_id))
    except GoldmineError as err:
        fail(err)


@app.command("demo")
def demo(out: Annotated[Path, typer.Option("--out", help="Where the demo writes data, model and database.")]
         = Path("support-demo"),
         base_model: Annotated[str, typer.Option("--base-model", help="'bundled' or a local model directory.")]
         = "bundled",
         steps: Annotated[int, typer.Option("--steps", min=1, help="Fine-tuning steps.")] = 30) -> None:
    """Offline: invented intents, messages and answers -> a fine-tuned intent model, a response index, a served
    app config, and a short conversation through the assistant."""
    from goldmine.apps.support.demo import run_demo

    try:
        replies = run_demo(out, base_model, steps)
    except GoldmineError as err:
        fail(err)
    for reply in replies:
        console.print(f"[bold]customer:[/] {escape(reply['message'])}")
        said = reply["answer"] if reply["handoff"] is None else \
            f"{reply['handoff']['message']} (hand-off: {reply['handoff']['reason']})"
        found = ", ".join(f"{e['type']}={e['text']!r}" for e in reply["entities"]) or "none"
        console.print(f"  intent {reply['intent']} ({reply['score']:.2f}); entities: {escape(found)}")
        console.print(f"  [bold]assistant:[/] {escape(said)}")
    console.print(escape(f"app config: {out / 'support.yaml'}; serve it with GOLDMINE_DATA_DIR={out / 'serving'} "
                         f"and the serving setting apps: [{out / 'support.yaml'}]"), highlight=False)
