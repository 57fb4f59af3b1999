"""`goldmine app medfaq ...`: ask, build-index, mask, demo. Each command is a few lines over the Python API
(`MedFaq.from_config`, `build_registered_index`, `PiiMasker`, `demo.run_demo`), the functions the HTTP route uses.

The terminal is the user's own, so `mask` shows the values it finds (that is what it is for: checking what the
patterns and the NER model catch); `ask` prints the reply, which holds only the masked question.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from goldmine.apps.cli import AppConfigOpt, ConfigOpt, app_config, console, fail, serving
from goldmine.errors import GoldmineError, InputError

app = typer.Typer(help="Medical FAQ with privacy: answer from the FAQ or hand off; personal data masked first.",
                  no_args_is_help=True)


def _show(result) -> None:
    console.print_json(json.dumps(result, ensure_ascii=False))


@app.command("ask")
def ask(questions: Annotated[list[str], typer.Argument(help="One question, or several (a batch).")],
        app_config_file: AppConfigOpt = None, config: ConfigOpt = None) -> None:
    """Answer questions (or hand them off, with the reason); print each reply as JSON: the masked question, the
    answer, its source URL and the disclaimer, the closest FAQ questions."""
    from goldmine.apps.medfaq.faq import MedFaq

    settings, db = serving(config)
    try:
        loaded = app_config("medfaq", app_config_file, settings)
        if len(questions) > loaded.max_questions:
            raise InputError(f"{len(questions)} questions in one call; this FAQ takes at most "
                             f"{loaded.max_questions} (max_questions in {loaded.source})")
        replies = MedFaq.from_config(loaded, db).answer_many(questions)
    except GoldmineError as err:
        fail(err)
    dumped = [reply.model_dump(mode="json") for reply in replies]
    _show(dumped[0] if len(dumped) == 1 else dumped)


@app.command("build-index")
def build_index(faq: Annotated[Path, typer.Argument(help="The FAQ: JSONL (or CSV/TSV) with question and answer, "
                                                    "optional id, url, focus.")],
                app_config_file: AppConfigOpt = None, config: ConfigOpt = None) -> None:
    """Build the FAQ index the app config names (models.retriever.index) on the registered retriever version it
    resolves to; a running server picks it up on its next call."""
    from goldmine.apps.medfaq.faq import build_registered_index

    settings, db = serving(config)
    try:
        loaded = app_config("medfaq", app_config_file, settings)
        index = build_registered_index(loaded, db, faq)
    except GoldmineError as err:
        fail(err)
    ref = loaded.models.retriever
    console.print(f"index {ref.index!r} of {ref.name} ({ref.version}): {len(index.entries)} FAQ entries")


@app.command("mask")
def mask(text: Annotated[str, typer.Argument(help="A text to mask (yours: the values found are shown).")],
         app_config_file: Annotated[Path | None, typer.Option(
             "--app-config", help="Mask as this app config does (its NER model and focus words); default: the "
                                  "patterns alone.")] = None,
         config: ConfigOpt = None) -> None:
    """Show what the masker finds in a text (kind, position, value) and the masked text: for checking the
    patterns, the NER model and the focus words on your own examples."""
    from goldmine.apps.medfaq.masking import PiiMasker

    try:
        if app_config_file is None:
            masker = PiiMasker()
        else:
            from goldmine.apps.medfaq.faq import MedFaq

            settings, db = serving(config)
            masker = MedFaq.from_config(app_config("medfaq", app_config_file, settings), db).masker
        [spans] = masker.spans_many([text])
        result = masker.mask(text)
    except GoldmineError as err:
        fail(err)
    _show({"masked": result.text,
           "found": [{"kind": kind.value, "start": start, "end": end, "text": text[start:end]}
                     for start, end, kind in spans],
           "limitations": masker.limitations})


@app.command("demo")
def demo(out: Annotated[Path, typer.Option("--out", help="Where the demo writes data, encoder and database.")]
         = Path("medfaq-demo"),
         retriever: Annotated[Path | None, typer.Option(
             "--retriever", help="A retrieval run to register and search with (default: the bundled encoder).")]
         = None) -> None:
    """Offline: an invented clinic FAQ indexed on a registered encoder, a threshold calibrated on questions apart
    from those asked, then questions with personal data, an urgent one and one the FAQ cannot answer."""
    from goldmine.apps.medfaq.demo import APP_CONFIG, run_demo

    try:
        asked = run_demo(out, retriever)
    except GoldmineError as err:
        fail(err)
    for question, reply in asked:  # the demo's questions are invented: showing them leaks nothing
        console.print(f"[bold]patient:[/] {escape(question)}")
        console.print(f"  masked: {escape(reply.masked_question)}")
        if reply.handoff is None:
            console.print(f"  [bold]answer[/] ({reply.score:.2f} >= {reply.threshold:.2f}): {escape(reply.answer)}")
            console.print(f"  source: {escape(reply.url or '-')}")
        else:
            if reply.handoff.rule:
                why = f"rule {reply.handoff.rule}"
            elif reply.score is not None:
                why = f"best match {reply.score:.2f} < {reply.threshold:.2f}"
            else:
                why = "nothing left to search once masked"
            console.print(f"  [bold]hand-off[/] ({reply.handoff.reason}, {why}): {escape(reply.handoff.message)}")
    console.print(escape(f"app config: {out / APP_CONFIG}; serve it with GOLDMINE_DATA_DIR={out / 'serving'} and "
                         f"the serving setting apps: [{out / APP_CONFIG}]"), highlight=False)
